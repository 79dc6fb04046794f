"""Domain errors and their HTTP mapping.

Domain code raises these; they are plain Python (no web framework here) so domain modules may
import them. ``shared.service`` maps them to HTTP: illegal transition -> 409 with the current
state and the allowed actions, not found -> 404 naming it, invalid -> 422 naming the field.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code = 400
    # The answer's machine-readable kind; a subclass with nothing more to say sets only this
    # and its status code.
    error = "domain_error"

    def detail(self) -> dict[str, Any]:
        return {"error": self.error, "message": str(self)}


class IllegalTransition(DomainError):
    status_code = 409

    def __init__(self, entity: str, state: str, action: str, allowed: list[str] | None = None
                 ) -> None:
        super().__init__(f"{entity} in state {state!r} cannot {action}")
        self.entity = entity
        self.state = state
        self.action = action
        self.allowed = sorted(allowed or [])

    def detail(self) -> dict[str, Any]:
        return {"error": "illegal_transition", "message": str(self), "entity": self.entity,
                "state": self.state, "action": self.action, "allowed": self.allowed}


class NotFound(DomainError):
    status_code = 404

    def __init__(self, entity: str, identifier: str) -> None:
        super().__init__(f"{entity} {identifier!r} not found")
        self.entity = entity
        self.identifier = identifier

    def detail(self) -> dict[str, Any]:
        return {"error": "not_found", "message": str(self), "entity": self.entity,
                "id": self.identifier}


class Forbidden(DomainError):
    """The token is valid and has the scope, but may not act on this one (another agent's
    call, another switch's call): 403 with the reason."""

    status_code = 403
    error = "forbidden"


class TooBusy(DomainError):
    """A bounded resource (open streams) is used up: 429, try again later."""

    status_code = 429
    error = "too_busy"


class PeerUnreachable(DomainError):
    """Another service this request needs did not answer: 502 naming it."""

    status_code = 502
    error = "peer_unreachable"


class Conflict(DomainError):
    status_code = 409
    error = "conflict"


class Invalid(DomainError):
    """Input that passed the schema but breaks a domain rule: 422 naming the field."""

    status_code = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def detail(self) -> list[dict[str, Any]]:  # type: ignore[override]
        # Same shape as FastAPI's validation errors so clients parse one format.
        return [{"loc": ["body", self.field], "msg": str(self), "type": "value_error"}]
