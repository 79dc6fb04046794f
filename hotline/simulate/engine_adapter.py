"""The ACD's routing engine (``services.acd_router.domain.engine``) behind the simulator's
:class:`~.router.Router` protocol. Only translation: every choice is the engine's."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.acd_router.domain.config import Credits, QueueConfig, RoutingConfig
from services.acd_router.domain.engine import AgentSpec, CallSpec, Decision, RoutingEngine

from .router import RESERVED, Assignment, FifoRouter, Router


def engine_config(routing: dict[str, Any] | None, *, vip_credit: float,
                  queues: Iterable[str] = (), clock_epoch: float | None = None
                  ) -> RoutingConfig:
    """The routing configuration to simulate: the given one (the service's own format), with
    every queue the scenario uses but the configuration does not name added as the service
    would auto-create it, except that VIPs get the simulation's ``vip_credit`` (the engine's
    default is strict priority; what-if runs usually want a finite credit such as the
    bank's 90 s)."""
    data = dict(routing or {})
    if clock_epoch is not None and "clock_epoch" not in data:
        data["clock_epoch"] = clock_epoch
    config = RoutingConfig.model_validate(data)
    extra = {name: QueueConfig(skills={name: 1}, strategy=config.default_strategy,
                               credits=Credits(vip=vip_credit))
             for name in sorted(set(queues)) if name not in config.queues}
    if extra:
        config = config.model_copy(update={"queues": {**config.queues, **extra}})
    return config


class EngineRouter:
    name = "acd-engine"

    def __init__(self, config: RoutingConfig) -> None:
        self.engine = RoutingEngine(config)

    @staticmethod
    def _out(decisions: list[Decision]) -> list[Assignment]:
        return [Assignment(d.call_id, d.agent_id, d.kind, d.target_queue or d.queue)
                if d.kind != RESERVED else Assignment(d.call_id, d.agent_id)
                for d in decisions]

    def agent_logged_in(self, agent_id: str, skills: dict[str, int], team: str | None,
                        department: str | None, now: float) -> None:
        self.engine.agent_logged_in(AgentSpec(agent_id, skills, team, department), now)

    def agent_logged_out(self, agent_id: str, now: float) -> None:
        self.engine.agent_logged_out(agent_id, now)

    def agent_ready(self, agent_id: str, now: float, since: float | None = None
                    ) -> list[Assignment]:
        return self._out(self.engine.agent_ready(agent_id, now, since=since))

    def agent_busy(self, agent_id: str, now: float) -> None:
        self.engine.agent_busy(agent_id, now)

    def call_arrived(self, call_id: str, queue: str, vip: bool, customer: str | None,
                     now: float) -> list[Assignment]:
        return self._out(self.engine.call_arrived(
            CallSpec(call_id, queue, vip=vip, customer=customer), now))

    def call_left(self, call_id: str, now: float) -> None:
        self.engine.call_left(call_id, now)

    def call_answered(self, call_id: str, agent_id: str, now: float) -> None:
        # The engine forgets a call once answered; the agent is already out of its ready
        # index since the reservation.
        self.engine.call_left(call_id, now)

    def call_finished(self, agent_id: str, talk: float, now: float) -> None:
        self.engine.record_talk(agent_id, talk, now)

    def tick(self, now: float) -> list[Assignment]:
        return self._out(self.engine.tick(now))

    def next_deadline(self) -> float | None:
        return self.engine.next_deadline()


def make_router(kind: str = "engine", routing: dict[str, Any] | None = None, *,
                vip_credit: float = 90.0, queues: Iterable[str] = (),
                clock_epoch: float | None = None) -> Router:
    """``engine``: the ACD's routing core (``routing`` is its configuration, as in the
    service's YAML); ``fifo``: the small oracle in :mod:`hotline.simulate.router`."""
    if kind == "fifo":
        return FifoRouter(vip_credit)
    if kind == "engine":
        return EngineRouter(engine_config(routing, vip_credit=vip_credit, queues=queues,
                                          clock_epoch=clock_epoch))
    raise ValueError(f"unknown router {kind!r} (engine or fifo)")
