"""A streaming WAV (RIFF, PCM) writer.

The 44-byte header goes out first with zero sizes so the file is a valid prefix at every
moment; :meth:`WavWriter.close` patches the RIFF and data sizes. Nothing but the current
frame is held in memory, so a long call costs no more RAM than a short one.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

HEADER_SIZE = 44
# RIFF sizes are 32-bit; stop accepting audio before the header would overflow.
MAX_DATA_BYTES = 0xFFFFFFFF - (HEADER_SIZE - 8)


def wav_header(data_bytes: int, *, sample_rate: int, channels: int, sample_width: int) -> bytes:
    block_align = channels * sample_width
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", HEADER_SIZE - 8 + data_bytes, b"WAVE",
        b"fmt ", 16, 1, channels, sample_rate, sample_rate * block_align, block_align,
        sample_width * 8,
        b"data", data_bytes,
    )


@dataclass(frozen=True)
class WavFile:
    path: Path
    frames: int
    size_bytes: int
    sha256: str


class WavWriter:
    """Blocking file IO: call it from a worker thread (``asyncio.to_thread``) in async code."""

    def __init__(self, path: Path, *, sample_rate: int = 8000, channels: int = 1,
                 sample_width: int = 2) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.channels = channels
        self.sample_width = sample_width
        self.data_bytes = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("wb")
        self._file.write(self._header())
        self._file.flush()
        self._closed = False

    @property
    def frame_size(self) -> int:
        return self.channels * self.sample_width

    @property
    def frames(self) -> int:
        return self.data_bytes // self.frame_size

    def write(self, pcm: bytes) -> None:
        if self._closed:
            raise ValueError("the WAV file is closed")
        if len(pcm) % self.frame_size:
            raise ValueError(f"audio must be whole frames of {self.frame_size} bytes")
        if self.data_bytes + len(pcm) > MAX_DATA_BYTES:
            raise ValueError("the WAV file would exceed 4 GiB")
        self._file.write(pcm)
        self.data_bytes += len(pcm)

    def close(self) -> WavFile:
        """Patch the sizes, flush to disk and return the file's frame count, size and hash."""
        if not self._closed:
            self._file.seek(0)
            self._file.write(self._header())
            self._file.flush()
            # The file is announced as stored right after this; it must survive a crash.
            os.fsync(self._file.fileno())
            self._file.close()
            self._closed = True
        return WavFile(self.path, self.frames, self.path.stat().st_size, sha256_of(self.path))

    def abandon(self) -> None:
        """Close the file unfinished: the claim it was opened for was undone (and is redone,
        opening it again)."""
        if not self._closed:
            self._file.close()
            self._closed = True

    def _header(self) -> bytes:
        return wav_header(self.data_bytes, sample_rate=self.sample_rate, channels=self.channels,
                          sample_width=self.sample_width)


def sha256_of(path: Path, chunk: int = 1 << 16) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
