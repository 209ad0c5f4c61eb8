"""Which text is a number on the wire: ASCII decimal digits only.

`str.isdigit()` is True for U+00B2 '²', U+0663 (Arabic-Indic three), U+FF13 (full-width
three) and U+1D7D9 (double-struck one); `int()`
then raises on the first and quietly accepts the others. Protocol fields (SIP ports,
CSeq, Content-Length, Expires; HTTP query numbers, ids, Range, Content-Length) are ASCII
by their grammars (RFC 3261 §25.1 DIGIT, RFC 5234 §B.1 %x30-39), so anything else is a
bad request — a 400, never a 500 (issue 11).
"""

from __future__ import annotations

__all__ = ["is_ascii_digits"]


def is_ascii_digits(text: str) -> bool:
    """True for a non-empty run of 0-9 and nothing else."""
    return text.isascii() and text.isdigit()
