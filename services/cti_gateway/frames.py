"""The softswitch wire protocol: SIP-flavoured JSON frames (see docs/CONTRACTS.md).

Incoming frames are parsed into one discriminated union (by ``type``, then by ``method`` for
requests), so a frame either is one of the shapes below or is ``bad_frame``. Unknown extra
fields are ignored: the switch may send more than CTI needs.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from services.cti_gateway.domain import Leg, Method

CallId = Annotated[str, Field(min_length=1, max_length=64)]
Number = Annotated[str, Field(min_length=1, max_length=64)]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class _Request(_Frame):
    type: Literal["request"]
    call_id: CallId
    cseq: int = Field(ge=0)
    leg: Leg


class InviteRequest(_Request):
    method: Literal["INVITE"]
    # The switch only ever offers PSTN calls; agent and customer legs are CTI's INVITEs.
    leg: Literal["caller"]
    from_number: Number = Field(alias="from")
    to_number: Number = Field(alias="to")


class AckRequest(_Request):
    method: Literal["ACK"]


class ByeRequest(_Request):
    method: Literal["BYE"]


class CancelRequest(_Request):
    method: Literal["CANCEL"]


class InfoRequest(_Request):
    method: Literal["INFO"]
    leg: Literal["caller", "customer"]
    dtmf: str = Field(min_length=1, max_length=32, pattern=r"^[0-9*#A-Da-d]+$")


Request = Annotated[InviteRequest | AckRequest | ByeRequest | CancelRequest | InfoRequest,
                    Field(discriminator="method")]


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


Frame = Annotated[Request | Response | ErrorFrame, Field(discriminator="type")]
_FRAME: TypeAdapter[Any] = TypeAdapter(Frame)

AnyRequest = InviteRequest | AckRequest | ByeRequest | CancelRequest | InfoRequest
AnyFrame = AnyRequest | Response | ErrorFrame


class BadFrame(ValueError):
    """A frame that is not one of the protocol's shapes; carries what could be salvaged so
    the error frame can point at the offending request."""

    def __init__(self, message: str, call_id: str | None, cseq: int | None) -> None:
        super().__init__(message)
        self.call_id = call_id
        self.cseq = cseq


def parse(text: str | bytes | None) -> AnyFrame:
    if text is None:
        raise BadFrame("frames must be JSON text", None, None)
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise BadFrame(f"not JSON: {error}", None, None) from None
    try:
        frame: AnyFrame = _FRAME.validate_python(raw)
        return frame
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "frame"
        call_id = raw.get("call_id") if isinstance(raw, dict) else None
        cseq = raw.get("cseq") if isinstance(raw, dict) else None
        raise BadFrame(f"{where}: {first['msg']}",
                       call_id if isinstance(call_id, str) else None,
                       cseq if isinstance(cseq, int) and not isinstance(cseq, bool) else None,
                       ) from None


def request(method: Method, call_id: str, cseq: int, leg: Leg, fields: dict[str, Any]
            ) -> dict[str, Any]:
    return {"type": "request", "method": method, "call_id": call_id, "cseq": cseq, "leg": leg,
            **fields}


REASONS = {200: "OK"}


def response(to: AnyRequest, status: int = 200, reason: str | None = None) -> dict[str, Any]:
    return {"type": "response", "status": status, "reason": reason or REASONS.get(status, ""),
            "call_id": to.call_id, "cseq": to.cseq, "method": to.method, "leg": to.leg}


def error(code: Literal["bad_frame", "unknown_call", "illegal_state"], message: str,
          call_id: str | None = None, cseq: int | None = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "call_id": call_id, "cseq": cseq}
