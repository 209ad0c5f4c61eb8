"""Caller numbers in one form (E.164), so an AML fix finds its call.

The trunk shows a caller as ``+62812…``, ``0812…`` or ``62812…``; an AML
message as ``+62812…``; an SMS gateway as ``62812…``. Google's libphonenumber
(PyPI ``phonenumbers``) knows each country's trunk prefix and lengths; the
region is the centre's (Indonesia: ``ID``). A text it cannot read is kept as
its digits, so two identical odd strings still match.
"""

from __future__ import annotations

from typing import Final

import phonenumbers

__all__ = ["DEFAULT_REGION", "normalise_number"]

DEFAULT_REGION: Final = "ID"
MAX_NUMBER: Final = 32  # ITU-T E.164 §6: at most 15 digits; room for separators


def normalise_number(text: str | None, *, region: str = DEFAULT_REGION) -> str | None:
    """``+<country><number>`` for a phone number, its digits if unreadable, None if empty."""
    if text is None:
        return None
    raw = text.strip()[:MAX_NUMBER]
    if raw.lower().startswith(("sip:", "sips:", "tel:")):
        raw = raw.split(":", 1)[1].split("@", 1)[0].split(";", 1)[0]
    plus = raw.startswith("+")
    digits = "".join(c for c in raw if c.isdigit())
    if not digits:
        return None
    if not plus and digits.startswith("00"):
        plus, digits = True, digits[2:]
    if not plus and not digits.startswith("0"):
        # "62812…": the country code without "+", as gateways write it.
        code = str(phonenumbers.country_code_for_region(region))
        if code != "0" and digits.startswith(code) and len(digits) >= len(code) + 8:
            plus = True
    try:
        parsed = phonenumbers.parse(("+" if plus else "") + digits, None if plus else region)
    except phonenumbers.NumberParseException:
        return digits
    if not phonenumbers.is_possible_number(parsed):
        return ("+" if plus else "") + digits
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
