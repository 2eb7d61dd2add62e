"""Bounds on guessing a case's PIN, per (case, client network) and per case (specs/case-api.md).

A case is known here only by the digest of its number, so an unknown number is
guarded exactly like a real one. For each case the guard keeps, in memory:

* per client network (an IPv4 /24 or an IPv6 /64, :func:`client_net`): wrong
  PINs since its last lockout; ``max_failures`` of them lock that network out
  of that case for ``lockout`` seconds, doubling with each lockout up to a day.
  Other networks are not locked: wrong PINs from elsewhere never keep the
  person from checking or withdrawing their own case.
* per case: the wrong PINs of the current window (a day), at most ``budget``,
  shared fairly: with k networks guessing wrong, each may use budget / k of it.
  A network that has used its share, or any network with a wrong PIN once the
  budget is spent, waits for the next window. A network with no wrong PIN in
  the window is always let through: the person (who knows the PIN) is never
  refused because of someone else.

So an attacker holding A networks makes at most ``budget + A`` wrong guesses on
one case a day. State is bounded: at most ``max_cases`` cases (least recently
guessed forgotten first) and ``MAX_NETS`` networks a case. It is not persisted:
a restart forgets it (no client address is ever written anywhere).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field

from hashfed.node.errors import NodeError

MAX_LOCKOUT = 86400
"""The longest a network is locked out of a case, in seconds."""

WINDOW = 86400
"""Seconds of a case's guessing budget window."""

MAX_NETS = 4096
"""Most networks remembered per case; beyond, the least recent is forgotten (it
keeps counting in the case's budget)."""


def client_net(address: str) -> str:
    """Returns the network a client address belongs to for lockouts: its IPv4 /24 or
    IPv6 /64 (an IPv4-mapped IPv6 address as IPv4); anything else as it is."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]").split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if isinstance(ip, ipaddress.IPv4Address) else 64
    return str(ipaddress.ip_network((ip, prefix), strict=False))


class GuessRefused(NodeError):
    """No PIN check for this case from this network now: retry after retry_after seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"try again in {retry_after} seconds")
        self.retry_after = retry_after


@dataclass
class _Net:
    failures: int = 0
    lockouts: int = 0
    locked_until: int = 0
    wrong: int = 0  # wrong PINs in the case's current window


@dataclass
class _Case:
    window_start: int
    wrong: int = 0
    guessing: int = 0  # networks with a wrong PIN in the window
    nets: OrderedDict[str, _Net] = field(default_factory=OrderedDict)


class PinGuard:
    """Decides whether a PIN check may run, and records its outcome (not thread-safe:
    the caller holds a lock)."""

    def __init__(
        self, max_failures: int, lockout: int, budget: int, max_cases: int = 100_000
    ) -> None:
        if min(max_failures, lockout, budget, max_cases) < 1:
            raise ValueError("max_failures, lockout, budget and max_cases must be positive")
        self.max_failures = max_failures
        self.lockout = lockout
        self.budget = budget
        self.max_cases = max_cases
        self._cases: OrderedDict[bytes, _Case] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cases)

    def _case(self, case: bytes, now: int) -> _Case:
        state = self._cases.pop(case, None)
        if state is None:
            state = _Case(now)
        elif now >= state.window_start + WINDOW:
            state.window_start, state.wrong, state.guessing = now, 0, 0
            for net in state.nets.values():
                net.wrong = 0
        self._cases[case] = state  # now the most recently guessed
        while len(self._cases) > self.max_cases:
            self._cases.popitem(last=False)
        return state

    def check(self, case: bytes, net: str, now: int) -> None:
        """Raises GuessRefused unless a PIN check for case from net may run now."""
        state = self._case(case, now)
        entry = state.nets.get(net)
        if entry is None:
            return
        if entry.locked_until > now:
            raise GuessRefused(entry.locked_until - now)
        if entry.wrong:
            share = max(1, self.budget // max(1, state.guessing))
            if state.wrong >= self.budget or entry.wrong >= share:
                raise GuessRefused(state.window_start + WINDOW - now)

    def record(self, case: bytes, net: str, now: int, right: bool) -> None:
        """Records the outcome of a PIN check that :meth:`check` let run."""
        state = self._case(case, now)
        entry = state.nets.pop(net, None) or _Net()
        state.nets[net] = entry
        while len(state.nets) > MAX_NETS:
            _, forgotten = state.nets.popitem(last=False)
            if forgotten.wrong:
                state.guessing -= 1
        if right:
            entry.failures = entry.lockouts = 0
            return
        state.wrong += 1
        if not entry.wrong:
            state.guessing += 1
        entry.wrong += 1
        entry.failures += 1
        if entry.failures >= self.max_failures:
            entry.locked_until = now + min(self.lockout * 2**entry.lockouts, MAX_LOCKOUT)
            entry.failures, entry.lockouts = 0, entry.lockouts + 1

    def locked(self, case: bytes, now: int) -> bool:
        """Reports whether some network is locked out of case now."""
        state = self._cases.get(case)
        return state is not None and any(n.locked_until > now for n in state.nets.values())
