"""Which numbers the suite may dial, one policy for every outbound call (a work order's
callback, a caller's virtual-hold callback, an agent's manual dial later): a number is
normalised to E.164 once (full-width digits and punctuation folded), and that spelling is
what the deny list checks, the daily cap counts, storage keeps and the switch dials."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

INTERNATIONAL = "international"
PREMIUM = "premium"
INVALID = "invalid"
# What people write between digits; dropped before a number is checked, counted or dialled.
SEPARATORS = {ord(c): None for c in " \t\r\n-.()/"}
E164 = re.compile(r"\+[0-9]{3,15}")
# A national mobile number's length (without the country code).
MOBILE_DIGITS = 11


@dataclass(frozen=True)
class NumberPolicy:
    home_prefix: str = "+86"
    # Premium-rate and other never-dial prefixes (matched after stripping the home prefix).
    deny_prefixes: tuple[str, ...] = ("168", "1900", "1259")


def normalized(number: str, policy: NumberPolicy) -> str | None:
    """The number in E.164: full-width digits and punctuation folded (NFKC), separators
    dropped; ``00`` written for ``+``; a national number gets the home country code (its
    trunk ``0`` dropped), and so does one written with the code but no ``+`` (``86`` and a
    mobile number). None: not a phone number."""
    n = unicodedata.normalize("NFKC", number).translate(SEPARATORS)
    code = policy.home_prefix.lstrip("+")
    if n.startswith("00"):
        n = "+" + n[2:]
    elif n.startswith(code) and len(n) == len(code) + MOBILE_DIGITS:
        n = "+" + n
    elif not n.startswith("+"):
        n = policy.home_prefix + n.removeprefix("0")
    return n if E164.fullmatch(n) else None


def denied(number: str, policy: NumberPolicy) -> str | None:
    """Why a number must never be dialled (however it is spelled), or None."""
    n = normalized(number, policy)
    if n is None:
        return INVALID
    if not n.startswith(policy.home_prefix):
        return INTERNATIONAL
    national = n[len(policy.home_prefix):]
    if any(national.startswith(p) for p in policy.deny_prefixes):
        return PREMIUM
    return None
