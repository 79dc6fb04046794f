"""What a token may read of the floor's records (calls, recordings, customers, cases).

- ``admin`` and ``service`` tokens read everything, and so does a ``supervisor`` token that
  names no team or department; one that does reads the records of the agents it oversees
  (a call or recording of its team's or department's agents).
- An ``agent`` token reads the calls and recordings of its own agent (``sub``), and the
  orders it took or owns; asking for another agent's is refused with 403.
- Orders: a team's supervisor reads the orders its team's agents took; a department's
  supervisor those its agents took and those dispatched to the department.
- An ``integrator`` token reads records without personal data: names and numbers are masked
  and recordings' audio is refused, unless the token's ``grants`` claim names ``personal``
  (names and numbers) or ``audio``.

Masking keeps a number's last four digits (enough to tell two callers apart on a report).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.auth import Principal
from shared.errors import Forbidden

GRANTS = ("personal", "audio")
# Fields that carry a person's number or name, wherever a record has them.
NUMBER_FIELDS = frozenset({
    "caller", "callee", "from_number", "to_number", "number", "numbers", "ani",
    "contact_number", "callback_number",
})
NAME_FIELDS = frozenset({"name", "address"})
DIGITS = re.compile(r"\d")


@dataclass(frozen=True)
class DataScope:
    # Only this agent's calls and recordings (an agent token); None: anyone's.
    agent: str | None
    personal: bool
    audio: bool
    # A team's or department's supervisor: only the records of the agents it oversees.
    overseer: Principal | None = None

    @property
    def team(self) -> str | None:
        return self.overseer.team if self.overseer else None

    @property
    def department(self) -> str | None:
        return self.overseer.department if self.overseer else None

    def may_read_agent(self, agent_id: str | None, team: str | None = None,
                       department: str | None = None) -> bool:
        """Whether this scope reads a record of ``agent_id`` (of ``team`` in ``department``)."""
        if self.agent is not None:
            return agent_id == self.agent
        return self.overseer is None or self.overseer.oversees(team, department)

    def check_agent(self, agent_id: str | None, what: str, team: str | None = None,
                    department: str | None = None) -> None:
        """403 unless this scope reads the records of ``agent_id``."""
        if self.may_read_agent(agent_id, team, department):
            return
        if self.overseer is not None:
            raise Forbidden(f"{self.overseer.subject!r} reads the {what} of "
                            f"{self.overseer.oversight} only (this one is of team {team!r}, "
                            f"department {department!r})")
        raise Forbidden(f"an agent token reads its own {what} only (this one is "
                        f"{agent_id or 'no agent'!r}'s)")

    def may_read_order(self, *, created_by: str | None, owner: str | None,
                       team: str | None, agent_department: str | None,
                       department: str | None) -> bool:
        """Whether this scope reads an order taken by ``created_by`` (of ``team`` in
        ``agent_department``), owned by ``owner`` and dispatched to ``department``: an agent
        the orders it took or owns; a team's supervisor its team's; a department's the
        orders its agents took and those dispatched to it."""
        if self.agent is not None:
            return self.agent in (created_by, owner)
        if self.overseer is None:
            return True
        return (self.overseer.oversees(team, agent_department)
                or (self.overseer.department is not None
                    and department == self.overseer.department))

    def check_order(self, order: Mapping[str, Any]) -> None:
        """403 unless this scope reads ``order`` (a row or view with the order's fields)."""
        if not self.may_read_order(created_by=order.get("created_by"), owner=order.get("owner"),
                                   team=order.get("team"),
                                   agent_department=order.get("agent_department"),
                                   department=order.get("department")):
            who = (f"{self.overseer.subject!r} reads the orders of {self.overseer.oversight}"
                   if self.overseer is not None else
                   f"an agent token reads the orders its agent {self.agent!r} took or owns")
            raise Forbidden(f"{who} only; order {order.get('order_id')!r} is not one of them")

    def agent_filter(self, asked: str | None) -> str | None:
        """The agent a search is limited to: an agent token's own, whatever was asked."""
        if self.agent is not None and asked not in (None, self.agent):
            raise Forbidden(f"an agent token searches its own records only, not {asked!r}'s")
        return self.agent or asked

    def check_audio(self) -> None:
        if not self.audio:
            raise Forbidden("this token's grants do not include recordings' audio")

    def shown(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """``record`` as this scope may see it (personal fields masked unless granted)."""
        return dict(record) if self.personal else hide_personal(record)


def data_scope(principal: Principal) -> DataScope:
    if principal.acts_for_others:  # admin, service, supervisor
        return DataScope(agent=None, personal=True, audio=True,
                         overseer=principal if principal.oversees_part else None)
    if "agent" in principal.scopes:
        return DataScope(agent=principal.subject, personal=True, audio=True)
    grants = principal.grants
    return DataScope(agent=None, personal="personal" in grants, audio="audio" in grants)


def mask(value: str) -> str:
    """Every digit of a number but the last four replaced."""
    keep, seen = max(0, len(DIGITS.findall(value)) - 4), 0
    out = []
    for character in value:
        if character.isdigit():
            seen += 1
            out.append("*" if seen <= keep else character)
        else:
            out.append(character)
    return "".join(out)


def hide_personal(record: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in NUMBER_FIELDS and value is not None:
            out[key] = _masked(value)
        elif key in NAME_FIELDS and isinstance(value, str):
            out[key] = f"{value[:1]}***" if value else value
        elif isinstance(value, Mapping):
            out[key] = hide_personal(value)
        elif isinstance(value, list):
            out[key] = [hide_personal(v) if isinstance(v, Mapping) else v for v in value]
        else:
            out[key] = value
    return out


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, list):
        return [mask(v) if isinstance(v, str) else v for v in value]
    return value
