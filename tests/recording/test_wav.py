"""The streaming WAV writer produces files the stdlib reads back exactly."""

from __future__ import annotations

import hashlib
import math
import struct
import wave
from pathlib import Path

import pytest

from services.recording.wav import HEADER_SIZE, WavWriter


def tone(samples: int, rate: int = 8000) -> bytes:
    return b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                    for i in range(samples))


def test_written_file_reads_back(tmp_path: Path) -> None:
    pcm = tone(12000)
    writer = WavWriter(tmp_path / "a" / "b.wav")
    for offset in range(0, len(pcm), 320):
        writer.write(pcm[offset:offset + 320])
    result = writer.close()
    assert result.frames == 12000
    assert result.size_bytes == HEADER_SIZE + len(pcm)
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    with wave.open(str(result.path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == 12000
        assert wav.readframes(12000) == pcm


def test_header_is_valid_before_close(tmp_path: Path) -> None:
    writer = WavWriter(tmp_path / "open.wav")
    writer.write(tone(100))
    with wave.open(str(tmp_path / "open.wav"), "rb") as wav:
        assert wav.getnframes() == 0  # sizes are patched on close
    assert writer.close().frames == 100


def test_empty_file_is_valid(tmp_path: Path) -> None:
    result = WavWriter(tmp_path / "empty.wav").close()
    with wave.open(str(result.path), "rb") as wav:
        assert wav.getnframes() == 0
    assert result.size_bytes == HEADER_SIZE


def test_partial_sample_is_refused(tmp_path: Path) -> None:
    writer = WavWriter(tmp_path / "odd.wav")
    writer.write(b"\x01\x02")
    with pytest.raises(ValueError):
        writer.write(b"\x01\x02\x03")
    assert writer.close().frames == 1
    assert writer.close().frames == 1  # idempotent
    with pytest.raises(ValueError):
        writer.write(b"\x00\x00")
