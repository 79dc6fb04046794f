"""Sans-IO core of the recording service."""

from services.recording.domain.recording import (
    TRANSITIONS,
    Action,
    Recording,
    RecordingState,
)

__all__ = ["TRANSITIONS", "Action", "Recording", "RecordingState"]
