"""A small counter-free PRNG (SplitMix64) for per-device random streams.

Each simulated device owns its own streams so that its messages do not depend on
which other devices share the process (`--processes N` splits the fleet and must
still produce the same messages). `random.Random` would do, but its state is
~2.5 KB and the fleet has tens of thousands of devices with three streams each.
"""

from __future__ import annotations

import hashlib
import math

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_TWO_PI = 2.0 * math.pi


def derive_seed(*parts: object) -> int:
    """A stable 64-bit seed from any printable parts (independent of PYTHONHASHSEED)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


class Rng:
    __slots__ = ("_spare", "_state")

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK
        self._spare: float | None = None

    def random(self) -> float:
        """Uniform in [0, 1)."""
        self._state = z = (self._state + _GOLDEN) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return ((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0)

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.random()

    def randint(self, lo: int, hi: int) -> int:
        """Integer in [lo, hi], both ends included."""
        return lo + int(self.random() * (hi - lo + 1))

    def chance(self, p: float) -> bool:
        return self.random() < p

    def expovariate(self, rate: float) -> float:
        return -math.log(1.0 - self.random()) / rate

    def gauss(self, mu: float = 0.0, sigma: float = 1.0) -> float:
        spare = self._spare
        if spare is not None:
            self._spare = None
            return mu + sigma * spare
        r = math.sqrt(-2.0 * math.log(1.0 - self.random()))
        theta = _TWO_PI * self.random()
        self._spare = r * math.sin(theta)
        return mu + sigma * r * math.cos(theta)

    def lognormal(self, median: float, sigma: float) -> float:
        return median * math.exp(self.gauss(0.0, sigma))

    def pick(self, weights: tuple[float, ...]) -> int:
        """Index drawn with the given (not necessarily normalised) weights."""
        x = self.random() * sum(weights)
        for i, w in enumerate(weights):
            x -= w
            if x < 0.0:
                return i
        return len(weights) - 1
