"""The recording state machine.

A recording has two halves that arrive independently and in either order: the call's
metadata (from ``cti.call.connected``, or a ``cti.call.released`` that carries
``connected_at``) and the media stream (the switch's fork over WebSocket). It is stored
once the stream has stopped *and* the metadata is known.

    pending --connect | start_media--> recording --stop_media--> stopped --store--> stored

``connect`` and ``end_call`` are accepted in ``recording`` and ``stopped`` too (they fill in
the metadata half). Guards on top of the table: media starts once and must have started
before it stops; ``store`` needs the metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.errors import IllegalTransition
from shared.transitions import Transitions


class RecordingState(StrEnum):
    PENDING = "pending"
    RECORDING = "recording"
    STOPPED = "stopped"
    STORED = "stored"
    # Media arrived, but the call ended without ever being bridged to an agent: there is no
    # conversation to keep (e.g. the caller hung up as the agent's phone answered).
    DISCARDED = "discarded"
    # Later: PAUSED (hold/retrieve) sits between RECORDING and STOPPED.


class Action(StrEnum):
    CONNECT = "connect"
    START_MEDIA = "start_media"
    STOP_MEDIA = "stop_media"
    END_CALL = "end_call"
    STORE = "store"
    DISCARD = "discard"


S, A = RecordingState, Action
TRANSITIONS: Transitions[RecordingState, Action, RecordingState] = Transitions("recording", {
    (S.PENDING, A.CONNECT): S.RECORDING,
    (S.PENDING, A.START_MEDIA): S.RECORDING,
    (S.RECORDING, A.CONNECT): S.RECORDING,
    (S.RECORDING, A.START_MEDIA): S.RECORDING,
    (S.RECORDING, A.END_CALL): S.RECORDING,
    (S.RECORDING, A.STOP_MEDIA): S.STOPPED,
    (S.STOPPED, A.CONNECT): S.STOPPED,
    (S.STOPPED, A.END_CALL): S.STOPPED,
    (S.STOPPED, A.STORE): S.STORED,
    (S.STOPPED, A.DISCARD): S.DISCARDED,
})


@dataclass
class Recording:
    recording_id: str
    call_id: str
    state: RecordingState = RecordingState.PENDING
    # Metadata half.
    connected: bool = False
    agent_id: str | None = None
    # The agent's team and department: whose supervisors may read and hear the recording.
    team: str | None = None
    department: str | None = None
    caller: str | None = None
    callee: str | None = None
    connected_at: datetime | None = None
    call_ended_at: datetime | None = None
    # The call ended and CTI says it never connected.
    ended_unbridged: bool = False
    # Media half.
    media_started_at: datetime | None = None
    media_ended_at: datetime | None = None
    sample_rate: int | None = None
    samples: int = 0
    size_bytes: int | None = None
    sha256: str | None = None
    path: str | None = None
    stored_at: datetime | None = None

    # -- queries -----------------------------------------------------------------------------

    @property
    def started_at(self) -> datetime | None:
        """When the conversation began: the connect time, or the media's if that is all we
        know yet."""
        return self.connected_at or self.media_started_at

    @property
    def duration_seconds(self) -> float | None:
        # Sample count over rate, not wall time: it stays right under HOTLINE_TIME_SCALE.
        if self.sample_rate is None or self.media_ended_at is None:
            return None
        return self.samples / self.sample_rate

    @property
    def untouched(self) -> bool:
        """Neither half has arrived: the row exists only inside this transaction."""
        return self.state is RecordingState.PENDING

    @property
    def ready_to_store(self) -> bool:
        return self.state is RecordingState.STOPPED and self.connected

    @property
    def ready_to_discard(self) -> bool:
        return self.state is RecordingState.STOPPED and self.ended_unbridged and not self.connected

    def allowed(self) -> list[str]:
        return sorted(a.value for a in Action if self._permits(a))

    # -- transitions -------------------------------------------------------------------------

    def connect(self, *, agent_id: str | None, caller: str | None, callee: str | None,
                connected_at: datetime | None, team: str | None = None,
                department: str | None = None) -> None:
        self._move(Action.CONNECT)
        if self.connected:
            # A second connect (redelivery under a new id, or a later transfer) keeps the
            # first agent until transfers are modelled.
            return
        self.connected = True
        self.agent_id = agent_id
        self.team, self.department = team, department
        self.caller = caller
        self.callee = callee
        self.connected_at = connected_at

    def start_media(self, *, path: str, sample_rate: int, now: datetime) -> None:
        self._move(Action.START_MEDIA)
        self.path = path
        self.sample_rate = sample_rate
        self.media_started_at = now

    def stop_media(self, *, samples: int, size_bytes: int, sha256: str, now: datetime) -> None:
        self._move(Action.STOP_MEDIA)
        self.samples = samples
        self.size_bytes = size_bytes
        self.sha256 = sha256
        self.media_ended_at = now

    def end_call(self, *, now: datetime, bridged: bool = True) -> None:
        self._move(Action.END_CALL)
        if self.call_ended_at is None:
            self.call_ended_at = now
        self.ended_unbridged = not bridged

    def discard(self) -> None:
        self._move(Action.DISCARD)

    def store(self, *, now: datetime) -> None:
        self._move(Action.STORE)
        self.stored_at = now

    # -- machinery ---------------------------------------------------------------------------

    def _permits(self, action: Action) -> bool:
        if (self.state, action) not in TRANSITIONS:
            return False
        if action is Action.START_MEDIA:
            return self.media_started_at is None
        if action is Action.STOP_MEDIA:
            return self.media_started_at is not None
        if action is Action.STORE:
            return self.connected
        if action is Action.DISCARD:
            return self.ended_unbridged and not self.connected
        return True

    def _move(self, action: Action) -> None:
        if not self._permits(action):
            raise IllegalTransition(f"recording {self.recording_id}", self.state.value,
                                    action.value, self.allowed())
        self.state = TRANSITIONS.target(self.state, action)
