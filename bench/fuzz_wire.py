"""Fuzz the MQTT codec's parser with hypothesis: arbitrary bytes, packet-shaped bytes
(any first byte, honest or lying remaining lengths, random bodies) and valid packets
cut short, overwritten or lengthened. Every case must end in messages and events or
in `ProtocolError`; the same bytes fed in two pieces must give the same result, and
more bytes must not change what the first ones gave.

    python -m bench.fuzz_wire [--cases 1000000] [--seed N]

Prints the cases run, their rate, the outcomes (messages, events, protocol errors by
reason code) and every other exception by type with its count and shortest input;
exits 1 if there was any. The strategy `cases` is the one the CI test runs briefly.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import hypothesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ingest.sources import mqtt_wire as wire

# First bytes worth hitting often: every type the parser knows, with right and wrong flags.
_FIRSTS = [0x20, 0x21, 0x30, 0x31, 0x32, 0x33, 0x34, 0x36, 0x3B, 0x40, 0x42, 0x50, 0x62, 0x70]
_FIRSTS += [0x90, 0x92, 0xB0, 0xC0, 0xD0, 0xD1, 0xE0, 0xE4, 0xF0, 0x10, 0x82, 0x00]


def _prop_block(body: bytes) -> bytes:
    return wire.varint(len(body)) + body


_props = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from([0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A]),
            st.binary(min_size=1, max_size=1),
        ),
        st.tuples(st.sampled_from([0x13, 0x21, 0x22, 0x23]), st.binary(min_size=2, max_size=2)),
        st.tuples(st.sampled_from([0x02, 0x11, 0x18, 0x27]), st.binary(min_size=4, max_size=4)),
        st.tuples(
            st.just(0x0B), st.sampled_from([b"\x01", b"\x80\x01", b"\xff\xff\x7f", b"\xff\xff\xff\xff"])
        ),
        st.tuples(
            st.sampled_from([0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F]),
            st.binary(max_size=8).map(lambda b: struct.pack("!H", len(b)) + b),
        ),
        st.tuples(st.just(0x26), st.just(b"\x00\x01k\x00\x01v")),
        st.tuples(st.integers(0, 255), st.binary(max_size=4)),  # any id, any bytes
    ),
    max_size=4,
).map(lambda ps: _prop_block(b"".join(bytes((pid,)) + v for pid, v in ps)))


def _valid_packets() -> st.SearchStrategy[bytes]:
    """Packets a broker may send, with properties, built by hand from the standard."""
    pid = st.integers(0, 65535).map(lambda i: struct.pack("!H", i))
    topic = st.binary(max_size=12).map(lambda b: struct.pack("!H", len(b)) + b)

    def pkt(first: int, body: bytes) -> bytes:
        return bytes((first,)) + wire.varint(len(body)) + body

    return st.one_of(
        st.builds(lambda f, p, b: pkt(0x20, f + b"\x00" + p + b), st.sampled_from([b"\x00", b"\x01"]),
                  _props, st.binary(max_size=2)),
        st.builds(lambda i, p, r: pkt(0x90, i + p + r), pid, _props, st.binary(max_size=3)),
        st.builds(lambda t, i, p, pay, q: pkt(q, t + (i if q & 6 else b"") + p + pay),
                  topic, pid, _props, st.binary(max_size=20), st.sampled_from([0x30, 0x32, 0x3A, 0x31])),
        st.builds(lambda i, rest: pkt(0x40, i + rest), pid, st.sampled_from([b"", b"\x00", b"\x10\x00"])),
        st.builds(lambda r, p: pkt(0xE0, r + p), st.binary(min_size=1, max_size=1), _props),
        st.just(b"\xe0\x00"),
        st.just(b"\xd0\x00"),
        st.builds(lambda i, r: pkt(0xB0, i + b"\x00" + r), pid, st.binary(max_size=2)),
    )  # fmt: skip


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid packet, then cut short, overwritten, grown or given another length."""
    data = bytearray(draw(_valid_packets()))
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["cut", "set", "insert", "length"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if how == "cut":
            del data[at:]
        elif how == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif how == "length" and len(data) > 1:
            data[1:2] = wire.varint(draw(st.integers(0, 300)))
    return bytes(data)


_shaped = st.builds(
    lambda first, length, body: bytes((first,)) + wire.varint(len(body) if length < 0 else length) + body,
    st.one_of(st.sampled_from(_FIRSTS), st.integers(0, 255)),
    st.one_of(st.just(-1), st.integers(0, 40), st.integers(0, wire.MAX_PACKET)),
    st.binary(max_size=40),
)

# One case: one to four pieces run together, as a socket read would bring them.
cases = st.lists(
    st.one_of(_mutated(), _shaped, _valid_packets(), st.binary(max_size=64)), min_size=1, max_size=4
).map(b"".join)


# The same shapes from a seeded `random.Random`: hypothesis spends ~10 ms a case on
# these strategies on this machine, too slow for a million; this spends microseconds.
_PROP_LEN = {
    **dict.fromkeys((0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A), 1),
    **dict.fromkeys((0x13, 0x21, 0x22, 0x23), 2),
    **dict.fromkeys((0x02, 0x11, 0x18, 0x27), 4),
}


class RandomCases:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def _bytes(self, most: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, most))

    def _props(self) -> bytes:
        r = self.rng
        out = bytearray()
        for _ in range(r.choice((0, 0, 1, 2, 4))):
            pid = r.choice((*_PROP_LEN, 0x0B, 0x03, 0x1F, 0x26, r.randint(0, 255)))
            out.append(pid)
            if pid in _PROP_LEN:
                out += r.randbytes(_PROP_LEN[pid])
            elif pid == 0x0B:
                out += r.choice((b"\x01", b"\x80\x01", b"\xff\xff\x7f", b"\xff\xff\xff\xff"))
            elif pid == 0x26:
                out += b"\x00\x01k\x00\x01v"
            else:
                b = self._bytes(8)
                out += struct.pack("!H", len(b)) + b
        return wire.varint(len(out)) + bytes(out)

    def valid(self) -> bytes:
        r = self.rng
        pid = struct.pack("!H", r.randint(0, 65535))
        kind = r.randrange(8)
        if kind == 0:
            first, body = 0x20, r.choice((b"\x00", b"\x01")) + b"\x00" + self._props()
        elif kind == 1:
            first, body = 0x90, pid + self._props() + self._bytes(3)
        elif kind == 2:
            t = self._bytes(12)
            first = r.choice((0x30, 0x32, 0x3A, 0x31))
            body = (
                struct.pack("!H", len(t)) + t + (pid if first & 6 else b"") + self._props() + self._bytes(20)
            )
        elif kind == 3:
            first, body = 0x40, pid + r.choice((b"", b"\x00", b"\x10\x00"))
        elif kind == 4:
            first, body = 0xE0, r.randbytes(1) + self._props()
        elif kind == 5:
            first, body = 0xB0, pid + b"\x00" + self._bytes(2)
        else:
            return r.choice((b"\xe0\x00", b"\xd0\x00"))
        return bytes((first,)) + wire.varint(len(body)) + body

    def mutated(self) -> bytes:
        r = self.rng
        data = bytearray(self.valid())
        for _ in range(r.randint(0, 3)):
            how = r.randrange(4)
            at = r.randint(0, max(len(data) - 1, 0))
            if how == 0:
                del data[at:]
            elif how == 1 and data:
                data[at] = r.randint(0, 255)
            elif how == 2:
                data[at:at] = r.randbytes(r.randint(1, 4))
            elif how == 3 and len(data) > 1:
                data[1:2] = wire.varint(r.randint(0, 300))
        return bytes(data)

    def shaped(self) -> bytes:
        r = self.rng
        first = r.choice(_FIRSTS) if r.random() < 0.7 else r.randint(0, 255)
        body = self._bytes(40)
        length = r.choice((len(body), len(body), r.randint(0, 40), r.randint(0, wire.MAX_PACKET)))
        return bytes((first,)) + wire.varint(length) + body

    def case(self) -> tuple[bytes, int]:
        r = self.rng
        makers = (self.mutated, self.shaped, self.valid, lambda: self._bytes(64))
        data = b"".join(r.choice(makers)() for _ in range(r.randint(1, 4)))
        return data, r.randint(0, len(data))


Outcome = tuple[list[wire.Message], list[wire.Event]] | wire.ProtocolError


def parse(pieces: list[bytes]) -> Outcome:
    """Feed `pieces` to one parser. Exceptions other than ProtocolError propagate:
    they are what the fuzzing looks for."""
    parser = wire.Parser()
    msgs: list[wire.Message] = []
    events: list[wire.Event] = []
    try:
        for piece in pieces:
            m, e = parser.feed(piece)
            msgs += m
            events += e
    except wire.ProtocolError as exc:
        return exc
    return msgs, events


def run_case(data: bytes, cut: int) -> tuple[Outcome, Outcome, Outcome]:
    """`data` parsed whole, in two pieces cut at `cut`, and its first `cut` bytes alone."""
    cut = cut % (len(data) + 1)
    return parse([data]), parse([data[:cut], data[cut:]]), parse([data[:cut]])


def same(a: Outcome, b: Outcome) -> bool:
    """Whole and cut parses agree: the same messages and events, or both an error."""
    if isinstance(a, wire.ProtocolError) or isinstance(b, wire.ProtocolError):
        return isinstance(a, wire.ProtocolError) and isinstance(b, wire.ProtocolError)
    return a == b


def extends(whole: Outcome, prefix: Outcome) -> bool:
    """More bytes never change what the first ones gave: an error stays an error, and
    the messages and events of the prefix begin those of the whole (unless the rest
    is an error). A parser that reads past a packet's end fails this."""
    if isinstance(prefix, wire.ProtocolError):
        return isinstance(whole, wire.ProtocolError)
    if isinstance(whole, wire.ProtocolError):
        return True
    return whole[0][: len(prefix[0])] == prefix[0] and whole[1][: len(prefix[1])] == prefix[1]


@dataclass
class Tally:
    cases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    shortest: dict[str, bytes] = field(default_factory=dict)
    disagreements: int = 0  # whole vs two pieces, or prefix vs whole
    disagreement_example: bytes | None = None

    def record(self, data: bytes, cut: int) -> None:
        self.cases += 1
        try:
            whole, pieces, prefix = run_case(data, cut)
        except Exception as exc:  # counting any crash is the point
            kind = type(exc)
            name = (
                kind.__qualname__
                if kind.__module__ == "builtins"
                else f"{kind.__module__}.{kind.__qualname__}"
            )
            self.crashes[name] += 1
            if name not in self.shortest or len(data) < len(self.shortest[name]):
                self.shortest[name] = data
            return
        if isinstance(whole, wire.ProtocolError):
            self.outcomes[f"ProtocolError 0x{getattr(whole, 'reason', 0):02x}"] += 1
        elif whole[0]:
            self.outcomes["messages"] += 1
        elif whole[1]:
            self.outcomes["events only"] += 1
        else:
            self.outcomes["incomplete (waits for more)"] += 1
        if not (same(whole, pieces) and extends(whole, prefix)):
            self.disagreements += 1
            if self.disagreement_example is None or len(data) < len(self.disagreement_example):
                self.disagreement_example = data


def fuzz_random(n: int, seed: int) -> tuple[Tally, float]:
    tally = Tally()
    gen = RandomCases(seed)
    t0 = time.perf_counter()
    for _ in range(n):
        tally.record(*gen.case())
    return tally, time.perf_counter() - t0


def fuzz_hypothesis(n: int, seed: int) -> tuple[Tally, float]:
    tally = Tally()

    @hypothesis.seed(seed)
    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(cases, st.integers(0, 1 << 16))
    def one(data: bytes, cut: int) -> None:
        tally.record(data, cut)

    t0 = time.perf_counter()
    one()
    return tally, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1_000_000, help="cases to run (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the generator (default %(default)s)")
    ap.add_argument(
        "--engine",
        choices=("random", "hypothesis"),
        default="random",
        help="random: the shapes from a seeded generator, fast (default); hypothesis: the "
        "CI test's strategy, ~100 times slower",
    )
    args = ap.parse_args(argv)
    run = fuzz_random if args.engine == "random" else fuzz_hypothesis
    cpu0 = time.process_time()
    tally, seconds = run(args.cases, args.seed)
    cpu = time.process_time() - cpu0
    print(
        f"{tally.cases:,} cases ({args.engine}, seed {args.seed}) in {seconds:.1f} s: "
        f"{tally.cases / seconds:,.0f} cases/s, {cpu:.1f} CPU s ({tally.cases / cpu:,.0f} cases per CPU s)"
    )
    for name, count in tally.outcomes.most_common():
        print(f"  {name:32} {count:>10,}")
    print(f"disagreements (whole vs two pieces, prefix vs whole): {tally.disagreements:,}")
    if tally.disagreement_example is not None:
        print(f"  shortest: {tally.disagreement_example.hex()}")
    if not tally.crashes:
        print("exceptions other than ProtocolError: none")
        return 1 if tally.disagreements else 0
    print("exceptions other than ProtocolError:")
    for name, count in tally.crashes.most_common():
        print(f"  {name:32} {count:>10,}   shortest input: {tally.shortest[name].hex()}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
