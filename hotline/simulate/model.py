"""What the simulator runs: agents with shifts and calls with their timings (a scenario),
and what it produces per call (a record). Both readers (trace, bank CSV) build a Scenario."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SimAgent:
    id: str
    skills: dict[str, int]
    login: float = 0.0
    logout: float | None = None          # None: stays until the end
    answer_after: float = 0.0            # ring time before the agent answers
    wrapup: float = 0.0                  # after-call work, seconds
    team: str | None = None
    department: str | None = None


@dataclass(frozen=True)
class SimCall:
    id: str
    at: float                            # arrival (enters the IVR)
    queue: str | None                    # None: served by the IVR itself, never queued
    talk: float
    ivr: float = 0.0                     # seconds in the IVR before joining the queue
    patience: float | None = None        # None: waits forever
    vip: bool = False
    customer: str | None = None

    @property
    def queued_at(self) -> float:
        return self.at + self.ivr


@dataclass
class Scenario:
    name: str
    agents: list[SimAgent]
    calls: list[SimCall]
    # Things the reader noticed and worked around (e.g. skipped rows), for the report.
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CallRecord:
    id: str
    queue: str | None
    vip: bool
    arrived: float
    queued: float | None = None          # entered the queue (after the IVR)
    routed: float | None = None          # an agent was chosen (reserved) for it
    answered: float | None = None        # the agent answered: the queue wait ends here
    ended: float | None = None           # released (answered) or hung up (abandoned)
    agent: str | None = None
    # answered | abandoned | self_served | callback | released (a queue limit) | unserved
    outcome: str = "waiting"
    talk: float = 0.0
    wrapup: float = 0.0
    overflowed_to: str | None = None

    @property
    def wait(self) -> float | None:
        """Time in queue: until answer, or until hanging up."""
        if self.queued is None:
            return None
        if self.answered is not None:
            return self.answered - self.queued
        if self.outcome == "abandoned" and self.ended is not None:
            return self.ended - self.queued
        return None
