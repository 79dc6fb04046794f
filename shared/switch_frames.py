"""The switch link's wire protocol: SIP-flavoured JSON frames between a softswitch and
cti_gateway over ``WS /v1/switch`` (docs/CONTRACTS.md), typed in both directions. Both ends
import this module: cti_gateway parses what a switch sends (:func:`parse_from_switch`), the
softswitch what CTI sends (:func:`parse_from_cti`), and both build theirs with
:func:`request`, :func:`response` and :func:`error`.

A frame either is one of the shapes below or is refused as :class:`BadFrame` (never an
exception of another kind: a frame too deeply nested for the JSON parser included). Unknown
extra fields are ignored: either end may send more than the other needs.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.input_guard import parse_json, suspect, value_problem
from shared.limits import MAX_DEPTH

Leg = Literal["caller", "agent", "customer"]
Method = Literal["INVITE", "ACK", "BYE", "CANCEL", "INFO", "OPTIONS"]
CallId = Annotated[str, Field(min_length=1, max_length=64)]
Number = Annotated[str, Field(min_length=1, max_length=64)]
ErrorCode = Literal["bad_frame", "unknown_call", "illegal_state"]
# Longer text is not a frame either end sends.
MAX_FRAME_CHARACTERS = 64 * 1024


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class _Request(_Frame):
    type: Literal["request"]
    call_id: CallId
    cseq: int = Field(ge=0)
    leg: Leg


class AckRequest(_Request):
    method: Literal["ACK"]


class ByeRequest(_Request):
    method: Literal["BYE"]


class CancelRequest(_Request):
    method: Literal["CANCEL"]


# -- from the switch to CTI -----------------------------------------------------------------

class InviteRequest(_Request):
    """A PSTN call offered. The switch only ever offers callers; agent and customer legs are
    CTI's INVITEs."""

    method: Literal["INVITE"]
    leg: Literal["caller"]
    from_number: Number = Field(alias="from")
    to_number: Number = Field(alias="to")


class InfoRequest(_Request):
    """Digits the party pressed."""

    method: Literal["INFO"]
    leg: Literal["caller", "customer"]
    dtmf: str = Field(min_length=1, max_length=32, pattern=r"^[0-9*#A-Da-d]+$")


# -- from CTI to the switch -----------------------------------------------------------------

class Collect(_Frame):
    max_digits: int = 1
    timeout_seconds: float = 5.0


class Play(_Frame):
    """A prompt for the party; with ``collect`` the IVR waits for digits."""

    prompt_id: str
    text: str
    collect: Collect | None = None


class VirtualHoldOffer(_Frame):
    digit: str


class Notify(_Frame):
    """News for the party: ``queued`` with their place and wait (and a virtual-hold offer)."""

    event: str
    queue: str | None = None
    position: int | None = None
    estimated_wait_seconds: float | None = None
    virtual_hold: VirtualHoldOffer | None = None


class OutboundInvite(_Request):
    """CTI rings an agent's device (``agent_id``, for ``reservation_id``) or dials a
    customer (``headers`` carry the case it is about)."""

    method: Literal["INVITE"]
    leg: Literal["agent", "customer"]
    from_number: str = Field(alias="from")
    to_number: str = Field(alias="to")
    agent_id: str | None = None
    reservation_id: str | None = None
    # An agent-first dial for a caller on virtual hold: the call the dial serves.
    virtual_hold_for: str | None = None
    headers: dict[str, str] = {}
    # On an agent leg: the token the switch presents to recording to stream this call's
    # media (``shared.auth.Auth.mint_media_grant``).
    media_grant: str | None = None


class OutboundInfo(_Request):
    """A prompt or news for the party, or (``control`` answer) the agent's phone told to
    pick up."""

    method: Literal["INFO"]
    play: Play | None = None
    notify: Notify | None = None
    control: Literal["answer"] | None = None


class OptionsRequest(_Request):
    """Whether the switch still has the call (CTI asks when a switch connects for the calls
    an earlier connection carried): ``200`` yes, ``481`` no, and CTI then releases it."""

    method: Literal["OPTIONS"]


# -- both ways ------------------------------------------------------------------------------

class Response(_Frame):
    type: Literal["response"]
    status: int = Field(ge=100, le=699)
    reason: str = ""
    call_id: CallId
    cseq: int = Field(ge=0)
    method: Method
    leg: Leg


class ErrorFrame(_Frame):
    type: Literal["error"]
    code: str
    message: str = ""
    call_id: str | None = None
    cseq: int | None = None


SwitchRequest = InviteRequest | AckRequest | ByeRequest | CancelRequest | InfoRequest
CtiRequest = (OutboundInvite | AckRequest | ByeRequest | CancelRequest | OutboundInfo
              | OptionsRequest)
FromSwitch = SwitchRequest | Response | ErrorFrame
FromCti = CtiRequest | Response | ErrorFrame

_FROM_SWITCH: TypeAdapter[Any] = TypeAdapter(Annotated[
    Annotated[SwitchRequest, Field(discriminator="method")] | Response | ErrorFrame,
    Field(discriminator="type")])
_FROM_CTI: TypeAdapter[Any] = TypeAdapter(Annotated[
    Annotated[CtiRequest, Field(discriminator="method")] | Response | ErrorFrame,
    Field(discriminator="type")])


class BadFrame(ValueError):
    """A frame that is not one of the protocol's shapes; carries what could be salvaged so
    the error frame can point at the offending request."""

    def __init__(self, message: str, call_id: str | None, cseq: int | None) -> None:
        super().__init__(message)
        self.call_id = call_id
        self.cseq = cseq


def parse_from_switch(text: str | bytes | None) -> FromSwitch:
    frame: FromSwitch = _parse(text, _FROM_SWITCH)
    return frame


def parse_from_cti(text: str | bytes | None) -> FromCti:
    frame: FromCti = _parse(text, _FROM_CTI)
    return frame


def _parse(text: str | bytes | None, shapes: TypeAdapter[Any]) -> Any:
    if text is None:
        raise BadFrame("frames must be JSON text", None, None)
    if len(text) > MAX_FRAME_CHARACTERS:
        raise BadFrame(f"frame longer than {MAX_FRAME_CHARACTERS} characters", None, None)
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    checked = suspect(data, MAX_DEPTH)
    try:
        raw = parse_json(text) if checked else json.loads(text)
    except RecursionError:
        raise BadFrame("not JSON: nested too deeply", None, None) from None
    except ValueError as error:
        raise BadFrame(f"not JSON: {error}", None, None) from None
    # A NUL, a lone surrogate or a NaN would fail later, in the database, with no answer
    # to the switch: refuse it here, with an error frame naming the field.
    problem = value_problem(raw, MAX_DEPTH, root="frame") if checked else None
    if problem is not None:
        where = ".".join(str(part) for part in problem.loc)
        raise BadFrame(f"{where}: {problem.msg}", *_ids(raw))
    try:
        return shapes.validate_python(raw)
    except (ValidationError, RecursionError) as error:
        where, why = "frame", "nested too deeply"
        if isinstance(error, ValidationError):
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "frame"
            why = first["msg"]
        raise BadFrame(f"{where}: {why}", *_ids(raw)) from None


def _ids(raw: Any) -> tuple[str | None, int | None]:
    """The call id and CSeq of a frame refused, when it has usable ones (for the error)."""
    call_id = raw.get("call_id") if isinstance(raw, dict) else None
    cseq = raw.get("cseq") if isinstance(raw, dict) else None
    return (call_id if isinstance(call_id, str) and value_problem(call_id, 1) is None
            else None,
            cseq if isinstance(cseq, int) and not isinstance(cseq, bool) else None)


REASONS = {100: "Trying", 180: "Ringing", 200: "OK", 400: "Bad Request", 404: "Not Found",
           480: "Temporarily Unavailable", 481: "Call Does Not Exist", 486: "Busy Here",
           487: "Request Terminated", 603: "Decline"}


def request(method: Method, call_id: str, cseq: int, leg: Leg,
            fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "request", "method": method, "call_id": call_id, "cseq": cseq, "leg": leg,
            **(fields or {})}


def response(to: SwitchRequest | CtiRequest, status: int = 200, reason: str | None = None
             ) -> dict[str, Any]:
    return {"type": "response", "status": status, "reason": reason or REASONS.get(status, ""),
            "call_id": to.call_id, "cseq": to.cseq, "method": to.method, "leg": to.leg}


def error(code: ErrorCode, message: str, call_id: str | None = None,
          cseq: int | None = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "call_id": call_id, "cseq": cseq}
