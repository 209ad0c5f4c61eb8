"""Password guessing against one account, from however many addresses.

Owns the per-account rule shared by SIP digest (`sip.auth`) and web sign-in
(`web.auth`); a per-source limit (`sip.ratelimit`, the web address key)
still applies on top. Pure: time is passed in as `now`.

* **Independent of source.** Failures are counted per account, whatever the
  address they come from, so 400 addresses get the budget of one. After
  `free_failures` failures each further failure doubles a back-off
  (`base_backoff_s`, doubling up to `max_backoff_s`) during which the account
  refuses every attempt without checking it: at the defaults (10 free, 1 s
  doubling to 15 min) a guesser gets ~100 tries a day, against a
  password space of 2^40 or more.
* **The real operator keeps working.** The address an account last
  authenticated from (its *usual address*) is exempt from that back-off: an
  attacker elsewhere cannot lock the operator's phone or browser out. Its
  own failures count on a separate (account, usual address) budget with the
  same back-off, so a broken phone at the usual address locks only itself.
* **Bounded.** Callers pass only names that exist (configured accounts): an
  unknown name cannot succeed, and tracking it would let a sprayer evict
  real accounts' counts. `max_accounts` bounds memory regardless.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_BASE_BACKOFF_S",
    "DEFAULT_FREE_FAILURES",
    "DEFAULT_MAX_BACKOFF_S",
    "AccountGuard",
]

# No standard sets these; NIST SP 800-63B §5.2.2 asks for at most 100
# consecutive failed attempts per account before throttling bites harder.
DEFAULT_FREE_FAILURES: Final = 10
DEFAULT_BASE_BACKOFF_S: Final = 1.0
DEFAULT_MAX_BACKOFF_S: Final = 900.0
_MAX_ACCOUNTS: Final = 100_000


@dataclass(slots=True)
class _Budget:
    failures: int = 0
    refused_until: float = 0.0


class AccountGuard:
    """Failure budgets per account (any address) and per (account, usual address)."""

    __slots__ = (
        "_budgets",
        "_usual",
        "base_backoff_s",
        "free_failures",
        "max_accounts",
        "max_backoff_s",
    )

    def __init__(
        self,
        *,
        free_failures: int = DEFAULT_FREE_FAILURES,
        base_backoff_s: float = DEFAULT_BASE_BACKOFF_S,
        max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
        max_accounts: int = _MAX_ACCOUNTS,
    ) -> None:
        if free_failures < 1 or base_backoff_s <= 0 or max_backoff_s < base_backoff_s:
            raise ValueError("free_failures ≥ 1 and 0 < base_backoff_s ≤ max_backoff_s")
        self.free_failures = free_failures
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_accounts = max_accounts
        self._budgets: OrderedDict[tuple[str, bool], _Budget] = OrderedDict()
        self._usual: dict[str, str] = {}

    def usual_address(self, account: str) -> str | None:
        return self._usual.get(account)

    def _key(self, account: str, source: str) -> tuple[str, bool]:
        return (account, self._usual.get(account) == source)

    def refused_until(self, account: str, source: str, now: float) -> float | None:
        """When `account` may be tried again from `source`, or None if now."""
        budget = self._budgets.get(self._key(account, source))
        if budget is None or budget.refused_until <= now:
            return None
        return budget.refused_until

    def failed(self, account: str, source: str, now: float) -> float | None:
        """Count one failure; returns the end of the back-off it starts, if any."""
        key = self._key(account, source)
        budget = self._budgets.pop(key, None) or _Budget()
        self._budgets[key] = budget
        while len(self._budgets) > self.max_accounts:
            self._budgets.popitem(last=False)
        budget.failures += 1
        over = budget.failures - self.free_failures
        if over < 0:
            return None
        backoff = min(self.max_backoff_s, self.base_backoff_s * 2.0 ** min(over, 60))
        budget.refused_until = max(budget.refused_until, now + backoff)
        return budget.refused_until

    def succeeded(self, account: str, source: str) -> None:
        """A correct password from `source`: it becomes the usual address.

        Only the budget of the address that succeeded is cleared; failures from
        elsewhere keep counting (else the real operator's every registration
        would refill a guesser's budget)."""
        self._usual[account] = source
        self._budgets.pop((account, True), None)
