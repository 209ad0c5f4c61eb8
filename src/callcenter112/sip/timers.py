"""SIP transaction timer values: RFC 3261 §17 (Table 4) and RFC 6026 §8.

One place for every timer the transaction layer arms, computed from T1, T2
and T4. Over a reliable transport (TCP) the retransmission timers (A, E, G)
are not used and the "wait for retransmissions" timers D, I, J, K are zero,
exactly as Table 4 says; B, F, H, L and M keep 64*T1.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TimerValues"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerValues:
    t1: float = 0.5  # RFC 3261 §17.1.1.1: RTT estimate, default 500 ms
    t2: float = 4.0  # §17.1.2.2: longest retransmit interval (non-INVITE, 2xx)
    t4: float = 5.0  # §17.1.2.2: longest time a message stays in the network
    # §17.1.1.2: Timer D is "at least 32 seconds" on unreliable transports.
    timer_d_unreliable: float = 32.0
    # §16.6 bullet 11: Timer C "MUST be greater than 3 minutes". We are a UAC,
    # not a proxy: here it is the backstop that ends an INVITE client
    # transaction stuck in Proceeding when nobody cancels it.
    timer_c: float = 181.0

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError("timers need 0 < T1 <= T2")
        if self.t4 < 0 or self.timer_d_unreliable < 0 or self.timer_c <= 0:
            raise ValueError("timer values must be positive")

    @property
    def timeout(self) -> float:
        """Timers B, F, H, L, M (§17.1.1.2, §17.1.2.2, §17.2.1; RFC 6026 §8.4, §8.7)."""
        return 64 * self.t1

    def a(self, *, reliable: bool) -> float | None:
        """Initial INVITE retransmit interval (§17.1.1.2); None on TCP."""
        return None if reliable else self.t1

    def d(self, *, reliable: bool) -> float:
        return 0.0 if reliable else self.timer_d_unreliable

    def e(self, *, reliable: bool) -> float | None:
        """Initial non-INVITE retransmit interval (§17.1.2.2); None on TCP."""
        return None if reliable else self.t1

    def g(self, *, reliable: bool) -> float | None:
        """Initial final-response retransmit interval (§17.2.1); None on TCP."""
        return None if reliable else self.t1

    def i(self, *, reliable: bool) -> float:
        return 0.0 if reliable else self.t4

    def j(self, *, reliable: bool) -> float:
        return 0.0 if reliable else 64 * self.t1

    def k(self, *, reliable: bool) -> float:
        return 0.0 if reliable else self.t4

    def backoff(self, interval: float) -> float:
        """Next retransmit interval: doubled, capped at T2 (E, G, 2xx §13.3.1.4)."""
        return min(2 * interval, self.t2)
