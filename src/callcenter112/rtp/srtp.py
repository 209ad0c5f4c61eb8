"""SRTP keyed by SDES (RFC 4568 `a=crypto`) for operator legs: the record and the contexts.

Owns two things, both pure (bytes in, bytes out; key material is passed in,
never drawn here):

* `CryptoAttribute`, the wire record of one `a=crypto` value (RFC 4568 §9.1):
  ``tag SP crypto-suite SP "inline:" base64(key || salt) ["|" lifetime]
  ["|" MKI ":" length] *(SP session-param)``, `parse()` paired with
  `serialize()`. Only the two suites every softphone offers are accepted
  (RFC 4568 §6.2.1, §6.2.2: AES_CM_128_HMAC_SHA1_80 and _32, 16-byte key +
  14-byte salt); MKIs and session parameters are refused, which RFC 4568
  §6.1 allows an answerer to do by choosing another line or rejecting.
* `SrtpContext`: one leg's two directions (RFC 3711 §3.2: the sender's key
  protects, the receiver uses the *remote's* key to unprotect), on libsrtp
  through pylibsrtp (what aiortc uses). Protected packets never reach the
  recorder: the media glue unprotects first, so recordings stay the
  original G.711 bits (DESIGN §1).

Offer/answer (RFC 4568 §7.1.2): `answer_crypto()` picks the first offered
line we support and returns our own line with the same tag and suite.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Self

import pylibsrtp

__all__ = [
    "KEY_AND_SALT_BYTES",
    "SUITES",
    "CryptoAttribute",
    "SrtpContext",
    "SrtpError",
    "answer_crypto",
]

# RFC 4568 §6.2.1/§6.2.2: 128-bit master key + 112-bit master salt.
KEY_AND_SALT_BYTES: Final = 30
SUITES: Final[dict[str, int]] = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
MAX_TAG: Final = 999_999_999  # RFC 4568 §9.1: tag = 1*9DIGIT


class SrtpError(Exception):
    """A crypto attribute we cannot use, or a packet that fails to (un)protect."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CryptoAttribute:
    tag: int
    suite: str
    key_and_salt: bytes

    @classmethod
    def parse(cls, value: str) -> Self:
        parts = value.split()
        if len(parts) != 3:
            raise SrtpError(f"crypto: expected 'tag suite inline:key', got {value[:80]!r}")
        tag_text, suite, key_params = parts
        if not tag_text.isascii() or not tag_text.isdigit() or len(tag_text) > 9:
            raise SrtpError(f"crypto: bad tag {tag_text[:20]!r}")
        if suite not in SUITES:
            raise SrtpError(f"crypto: unsupported suite {suite[:40]!r}")
        method, _, info = key_params.partition(":")
        if method != "inline":
            raise SrtpError("crypto: only inline keys are supported")
        key_text, *extras = info.split("|")
        for extra in extras:
            # A lifetime is fine (we rekey never; libsrtp enforces 2^48); an MKI is not.
            if ":" in extra:
                raise SrtpError("crypto: MKI is not supported")
        try:
            key = base64.b64decode(key_text, validate=True)
        except (binascii.Error, ValueError):
            raise SrtpError("crypto: key is not base64") from None
        if len(key) != KEY_AND_SALT_BYTES:
            raise SrtpError(f"crypto: key+salt must be {KEY_AND_SALT_BYTES} bytes, got {len(key)}")
        return cls(tag=int(tag_text), suite=suite, key_and_salt=key)

    def serialize(self) -> str:
        key = base64.b64encode(self.key_and_salt).decode("ascii")
        return f"{self.tag} {self.suite} inline:{key}"

    @classmethod
    def generate(cls, *, tag: int, suite: str, key_and_salt: bytes) -> Self:
        """Our own line; `key_and_salt` from a CSPRNG (the caller's `os.urandom`)."""
        if suite not in SUITES or len(key_and_salt) != KEY_AND_SALT_BYTES:
            raise SrtpError("crypto: unsupported suite or key length")
        if not 1 <= tag <= MAX_TAG:
            raise SrtpError("crypto: tag out of range")
        return cls(tag=tag, suite=suite, key_and_salt=key_and_salt)


def answer_crypto(
    offered: Sequence[str | None], key_and_salt: bytes
) -> tuple[CryptoAttribute, CryptoAttribute] | None:
    """(the offered line we accept, our answer line), or None when no line is
    usable (then the stream must be rejected: RFC 4568 §7.1.2)."""
    for value in offered:
        if value is None:
            continue
        try:
            theirs = CryptoAttribute.parse(value)
        except SrtpError:
            continue
        ours = CryptoAttribute.generate(
            tag=theirs.tag, suite=theirs.suite, key_and_salt=key_and_salt
        )
        return theirs, ours
    return None


class SrtpContext:
    """Both directions of one SRTP leg."""

    __slots__ = ("_rx", "_tx")

    def __init__(self, *, local: CryptoAttribute, remote: CryptoAttribute) -> None:
        if local.suite != remote.suite:
            raise SrtpError("crypto: both directions must use the negotiated suite")
        self._tx = pylibsrtp.Session(
            policy=pylibsrtp.Policy(
                key=local.key_and_salt,
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                srtp_profile=SUITES[local.suite],
            )
        )
        self._rx = pylibsrtp.Session(
            policy=pylibsrtp.Policy(
                key=remote.key_and_salt,
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                srtp_profile=SUITES[remote.suite],
            )
        )

    def protect(self, rtp: bytes) -> bytes:
        return _run(self._tx.protect, "protect", rtp)

    def unprotect(self, srtp: bytes) -> bytes:
        """The RTP packet, or SrtpError (forged, replayed or damaged: drop it)."""
        return _run(self._rx.unprotect, "unprotect", srtp)

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        return _run(self._tx.protect_rtcp, "protect_rtcp", rtcp)

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        return _run(self._rx.unprotect_rtcp, "unprotect_rtcp", srtcp)


def _run(operation: Callable[[bytes], bytes], what: str, packet: bytes) -> bytes:
    try:
        return bytes(operation(packet))
    except pylibsrtp.Error as exc:
        raise SrtpError(f"{what}: {exc}") from None
