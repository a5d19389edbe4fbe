"""Every golden case decodes to exactly its expected message, or fails with its reason."""

from __future__ import annotations

import pytest

from adapters import REASONS, DecodeError
from tests.adapters.golden import Case, as_json, dispatcher, load_cases

CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_golden(case: Case) -> None:
    assert (case.expected is None) != (case.error is None), f"{case.id}: one of expected/error"
    d = dispatcher()
    if case.expected is not None:
        assert as_json(d.decode(case.topic, case.payload, case.received_at)) == case.expected
    else:
        assert case.error is not None
        with pytest.raises(DecodeError) as info:
            d.decode(case.topic, case.payload, case.received_at)
        assert info.value.reason == case.error["reason"]
        assert info.value.reason in REASONS
        assert case.error.get("detail_contains", "") in info.value.detail


def test_every_reason_is_covered_by_a_case() -> None:
    seen = {c.error["reason"] for c in CASES if c.error}
    # db_rejected, class_mismatch and internal_error are the worker's, not an adapter's
    # (tests/ingest/test_core.py); the native-frame ones are covered in test_sl651/test_ocpp.
    worker = {"db_rejected", "class_mismatch", "internal_error"}
    missing = set(REASONS) - seen - worker - {"bad_frame", "bad_checksum", "unsupported"}
    assert not missing, f"no golden case for {sorted(missing)}"
