"""What the centre sends to, and dials at, parties outside it.

Two pure rules, each with one home:

* `callable_number(raw)`: whether a number taken from a caller's From header (or typed on
  the console) may be dialled back, and in which form. Only valid Indonesian numbers
  (Google's libphonenumber metadata via the `phonenumbers` package, region ID) are dialled;
  anything else — a SIP URI's user part chosen by whoever sent the INVITE, a foreign
  number, a short code such as 112 itself, non-ASCII digits — is not, and the callback
  stays on the list for a person to judge. The form returned is the national one
  (``0`` + national significant number, digits only: ``081234567890``), what an
  Indonesian carrier's trunk routes.
* `headers_for(party, headers)`: which of the centre's own headers may go on a request to a
  party. Internal ones — the incident id, links to the console, anything naming the
  centre's inside — go to operators' and supervisors' phones only, never to the trunk,
  an agency or a citizen (issue 11: the console URL and `X-Incident-ID` reached the
  carrier).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final

import phonenumbers

__all__ = [
    "INTERNAL_HEADERS",
    "Party",
    "callable_number",
    "headers_for",
]

_REGION: Final = "ID"
_MAX_RAW: Final = 32  # E.164 allows 15 digits; room for "+", spaces, dashes, brackets
_ALLOWED: Final = frozenset("0123456789+-() .")
# Types a 112 centre calls back: fixed lines and mobiles (not premium, shared-cost,
# VoIP or pager ranges, which libphonenumber also calls valid).
_CALLABLE_TYPES: Final = frozenset(
    {
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    }
)


def callable_number(raw: str) -> str | None:
    """The national form of `raw` if it is a valid Indonesian fixed or mobile number."""
    text = raw.strip()
    if not text or len(text) > _MAX_RAW or not set(text) <= _ALLOWED:
        return None
    try:
        number = phonenumbers.parse(text, _REGION)
    except phonenumbers.NumberParseException:
        return None
    if (
        not phonenumbers.is_valid_number(number)
        or phonenumbers.region_code_for_number(number) != _REGION
        or phonenumbers.number_type(number) not in _CALLABLE_TYPES
    ):
        return None
    return "0" + phonenumbers.national_significant_number(number)


class Party(enum.Enum):
    """Who a request goes to."""

    OPERATOR = "operator"  # an operator's or supervisor's softphone: inside
    TRUNK = "trunk"  # the carrier (callbacks, agencies reached through it)
    AGENCY = "agency"
    CITIZEN = "citizen"

    @property
    def inside(self) -> bool:
        return self is Party.OPERATOR


# Lower-case names. Call-Info carries the console link; Subject the category.
INTERNAL_HEADERS: Final = frozenset(
    {"x-incident-id", "call-info", "subject", "x-console-url", "x-callcenter112-leg"}
)


def headers_for(party: Party, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """`headers` without the internal ones unless `party` is inside the centre."""
    if party.inside:
        return list(headers)
    return [(name, value) for name, value in headers if name.lower() not in INTERNAL_HEADERS]
