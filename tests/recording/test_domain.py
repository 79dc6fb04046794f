"""The recording state machine: both arrival orders, tolerance, illegal transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.recording.domain import TRANSITIONS, Action, Recording, RecordingState
from shared.errors import IllegalTransition

T0 = datetime(2026, 7, 15, 8, 0, tzinfo=UTC)


def new() -> Recording:
    return Recording(recording_id="rec-1", call_id="C1")


def connect(rec: Recording) -> None:
    rec.connect(agent_id="A001", caller="+8613800000001", callee="95598", connected_at=T0)


def start(rec: Recording) -> None:
    rec.start_media(path="2026/07/15/rec-1.wav", sample_rate=8000, now=T0 + timedelta(seconds=1))


def stop(rec: Recording, samples: int = 12000) -> None:
    rec.stop_media(samples=samples, size_bytes=44 + 2 * samples, sha256="ab" * 32,
                   now=T0 + timedelta(seconds=3))


def test_metadata_first_then_media() -> None:
    rec = new()
    connect(rec)
    assert rec.state is RecordingState.RECORDING and not rec.ready_to_store
    start(rec)
    rec.end_call(now=T0 + timedelta(seconds=2))
    assert not rec.ready_to_store
    stop(rec)
    assert rec.state is RecordingState.STOPPED and rec.ready_to_store
    rec.store(now=T0 + timedelta(seconds=4))
    assert rec.state is RecordingState.STORED
    assert rec.duration_seconds == 1.5
    assert rec.started_at == T0


def test_media_first_then_metadata() -> None:
    rec = new()
    start(rec)
    assert rec.state is RecordingState.RECORDING
    assert rec.started_at == T0 + timedelta(seconds=1)  # media time until the call is known
    stop(rec)
    assert rec.state is RecordingState.STOPPED and not rec.ready_to_store
    with pytest.raises(IllegalTransition):
        rec.store(now=T0)
    connect(rec)
    assert rec.ready_to_store and rec.agent_id == "A001" and rec.started_at == T0
    rec.end_call(now=T0 + timedelta(seconds=5))
    rec.store(now=T0 + timedelta(seconds=5))
    assert rec.state is RecordingState.STORED


def test_second_connect_keeps_first_agent() -> None:
    rec = new()
    connect(rec)
    rec.connect(agent_id="A002", caller="x", callee="y", connected_at=T0 + timedelta(seconds=9))
    assert rec.agent_id == "A001" and rec.connected_at == T0


def test_end_call_twice_keeps_first_time() -> None:
    rec = new()
    connect(rec)
    rec.end_call(now=T0)
    rec.end_call(now=T0 + timedelta(seconds=1))
    assert rec.call_ended_at == T0


@pytest.mark.parametrize(("setup", "action"), [
    ([], lambda r: stop(r)),                        # stop before any start
    ([], lambda r: r.end_call(now=T0)),             # release of an unknown recording
    ([], lambda r: r.store(now=T0)),
    ([connect], lambda r: stop(r)),                 # metadata but no media yet
    ([start], lambda r: start(r)),                  # a second stream
    ([start, stop], lambda r: start(r)),            # media again after it stopped
    ([start, stop], lambda r: stop(r)),
    ([connect, start, stop, lambda r: r.store(now=T0)], lambda r: connect(r)),
    ([connect, start, stop, lambda r: r.store(now=T0)], lambda r: r.end_call(now=T0)),
    ([connect, start, stop, lambda r: r.store(now=T0)], lambda r: r.store(now=T0)),
])
def test_illegal_transitions_raise_and_change_nothing(setup, action) -> None:
    rec = new()
    for step in setup:
        step(rec)
    before = (rec.state, rec.samples, rec.media_started_at, rec.agent_id)
    with pytest.raises(IllegalTransition) as raised:
        action(rec)
    assert (rec.state, rec.samples, rec.media_started_at, rec.agent_id) == before
    assert raised.value.state == rec.state.value
    assert raised.value.allowed == rec.allowed()


def test_allowed_actions_follow_guards() -> None:
    rec = new()
    assert rec.allowed() == ["connect", "start_media"]
    start(rec)
    assert rec.allowed() == ["connect", "end_call", "stop_media"]
    stop(rec)
    assert rec.allowed() == ["connect", "end_call"]
    connect(rec)
    assert rec.allowed() == ["connect", "end_call", "store"]


def test_table_has_no_exit_from_stored() -> None:
    assert not [key for key in TRANSITIONS if key[0] is RecordingState.STORED]
    assert {action for _, action in TRANSITIONS} == set(Action)
