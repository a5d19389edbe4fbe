"""The MQTT parser fed arbitrary and near-valid bytes (hypothesis): it gives messages
and events or a ProtocolError, never another exception; the same bytes give the same
result however they are cut; more bytes never change what the first ones gave. A
short run of `python -m bench.fuzz_wire`'s strategy (which runs a million cases)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz_wire import cases, extends, run_case, same


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases, st.integers(0, 1 << 16))
def test_any_bytes_end_in_messages_or_a_protocol_error(data: bytes, cut: int) -> None:
    whole, pieces, prefix = run_case(data, cut)  # raises anything but ProtocolError
    assert same(whole, pieces)
    assert extends(whole, prefix)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 200))
def test_raw_bytes(data: bytes, cut: int) -> None:
    whole, pieces, prefix = run_case(data, cut)
    assert same(whole, pieces)
    assert extends(whole, prefix)
