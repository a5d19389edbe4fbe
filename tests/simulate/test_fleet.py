from collections import Counter

import ingest.simulate
from ingest.simulate import TARGETS, build_fleet, class_counts
from ingest.simulate.fleet import ICING_REGIONS, PREFECTURES, apportion


def test_public_surface() -> None:
    assert sorted(ingest.simulate.__all__) == sorted(
        name for name in ingest.simulate.__all__ if hasattr(ingest.simulate, name))
    assert set(ingest.simulate.__all__) >= {"Simulation", "SimConfig", "build_fleet", "Message"}


def test_full_scale_matches_the_plan_targets() -> None:
    fleet = build_fleet(1.0, seed=7)
    per_class = Counter(d.device_class for d in fleet)
    assert per_class["reservoir"] == TARGETS["reservoir"] == 1_820
    assert per_class["power_line"] == TARGETS["power_line"] == 3_000
    assert per_class["charger"] == TARGETS["charger"] == 40_000  # charge points
    dcs = [d for d in fleet if d.device_class == "datacenter"]
    assert 40 <= len(dcs) <= 60
    assert sum(d.sizing["racks_built"] for d in dcs) == 600_000
    assert {d.region for d in dcs} == {"guian"}
    connectors = sum(int(d.attributes["connectors"]) for d in fleet if d.device_class == "charger")
    assert 48_000 < connectors < 58_000
    assert len({d.device_id for d in fleet}) == len(fleet)
    assert [d.index for d in fleet] == list(range(len(fleet)))


def test_regions_and_icing_lines() -> None:
    fleet = build_fleet(1.0, seed=7)
    for d in fleet:
        assert d.region in PREFECTURES or (d.region == "guian" and d.device_class == "datacenter")
    lines = Counter(d.region for d in fleet if d.device_class == "power_line")
    assert sum(lines[r] for r in ICING_REGIONS) > 0.5 * 3_000
    assert lines.most_common(1)[0][0] == "520500"


def test_small_scale_and_determinism() -> None:
    assert class_counts(0.01) == {"reservoir": 18, "power_line": 30, "charger": 400, "datacenter": 3}
    a, b = build_fleet(0.01, 3), build_fleet(0.01, 3)
    assert a == b
    assert build_fleet(0.01, 4) != a
    racks = sum(d.sizing["racks_built"] for d in a if d.device_class == "datacenter")
    assert racks == 6_000
    # filtering classes leaves the other classes' devices unchanged
    only = build_fleet(0.01, 3, ["charger"])
    assert [d.device_id for d in only] == [d.device_id for d in a if d.device_class == "charger"]
    assert [d.attributes for d in only] == [d.attributes for d in a if d.device_class == "charger"]


def test_apportion_is_exact() -> None:
    assert apportion(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert sum(apportion(1_820, {"x": 0.2, "y": 0.35, "z": 0.45}).values()) == 1_820
