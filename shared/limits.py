"""The limits every service puts on its input, in one place (plain values: domain code may
import them). The REST edge applies the body ones (``shared.input_guard``); schemas and
domain rules apply the rest."""

from __future__ import annotations

from datetime import date, datetime

MAX_BODY_BYTES = 1 << 20
MAX_DEPTH = 32
# A token's subject is stored as the actor of what it does (String(128) columns).
MAX_SUBJECT = 128
# A team's or department's name (the agents' columns).
MAX_TEAM = 64
# The longest duration a configuration may name (a year).
MAX_DURATION_SECONDS = 366 * 24 * 3600
# Dates a report or a statistics range may name: PostgreSQL and Python both hold them, and
# a period around them still does.
FIRST_YEAR, LAST_YEAR = 1900, 2200


def year_in_range(moment: date | datetime) -> bool:
    return FIRST_YEAR <= moment.year <= LAST_YEAR


YEARS_MESSAGE = f"dates are from {FIRST_YEAR} to {LAST_YEAR}"
