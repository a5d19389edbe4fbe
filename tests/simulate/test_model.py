import itertools
from collections import Counter, defaultdict
from datetime import UTC, datetime

import orjson
import pytest

from adapters import DecodeError
from ingest.dispatch import Dispatcher
from ingest.simulate import BAD_KINDS, Message, RainEvent, SimConfig, Simulation, build_fleet
from ingest.simulate.devices import in_icing_window
from ingest.simulate.fleet import ICING_REGIONS
from tests.simulate.conftest import START, run

HOUR = 3600.0


def at(m: Message) -> datetime:
    return datetime.fromtimestamp(m.ts, UTC)


def test_same_seed_same_messages_different_seed_different() -> None:
    a = run(hours=3, bad_share=0.05, churn_per_day=3.0)
    b = run(hours=3, bad_share=0.05, churn_per_day=3.0)
    assert a == b and len(a) > 1000
    c = run(hours=3, seed=2, bad_share=0.05, churn_per_day=3.0)
    assert [m.payload for m in c] != [m.payload for m in a]


def test_messages_are_in_time_order(mixed_run: list[Message]) -> None:
    times = [m.ts for m in mixed_run]
    assert times == sorted(times)


def test_shards_partition_the_stream() -> None:
    fleet = build_fleet(0.01, 1)
    whole = list(Simulation(fleet, SimConfig(start=START, bad_share=0.05)).run(START + 2 * HOUR))
    parts = [list(Simulation(fleet, SimConfig(start=START, bad_share=0.05, shard=k, shards=3))
                  .run(START + 2 * HOUR)) for k in range(3)]
    key = lambda m: (m.ts, m.topic, m.payload)  # noqa: E731
    assert sorted(map(key, (m for p in parts for m in p))) == sorted(map(key, whole))


def test_good_messages_decode_and_bad_ones_are_rejected(
    mixed_run: list[Message], dispatcher: Dispatcher
) -> None:
    outcome: Counter[tuple[str, str | None]] = Counter()
    for m in mixed_run:
        try:
            decoded = dispatcher.decode(m.topic, m.payload, at(m))
        except DecodeError as exc:
            assert exc.reason == m.bad, (exc, m)
            outcome[(exc.reason, m.bad)] += 1
            continue
        assert m.bad is None, m
        assert decoded.device_id == m.device_id
        if m.channel == "telemetry":
            assert decoded.ts == at(m)
        outcome[("ok", m.channel)] += 1
    for kind in BAD_KINDS:
        assert outcome[(kind, kind)] > 0, kind
    assert outcome[("ok", "telemetry")] > 10 * sum(outcome[(k, k)] for k in BAD_KINDS)


def test_status_births_outages_and_meta(mixed_run: list[Message]) -> None:
    statuses = [(m.device_id, orjson.loads(m.payload)["status"]) for m in mixed_run
                if m.channel == "status"]
    assert all(m.retain for m in mixed_run if m.channel == "status")
    births = Counter(d for d, s in statuses if s == "online")
    assert len(births) == 451  # every device is born
    assert any(n > 1 for n in births.values())  # some came back after an outage
    assert any(s == "offline" for _, s in statuses)
    # The first report after each birth carries the registry hints.
    pending: set[str] = set()
    for m in mixed_run:
        if m.channel == "status":
            pending.add(m.device_id)
        elif m.bad is None:
            has_meta = "meta" in orjson.loads(m.payload)
            assert has_meta == (m.device_id in pending), m
            pending.discard(m.device_id)


def _series(messages: list[Message]) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = defaultdict(list)
    for m in messages:
        if m.channel == "telemetry" and m.bad is None:
            out[m.device_id].append(orjson.loads(m.payload)["metrics"])
    return out


def test_registers_only_go_up(mixed_run: list[Message]) -> None:
    last: dict[tuple[str, str], float] = {}
    checked: Counter[str] = Counter()
    for device, reports in _series(mixed_run).items():
        for metrics in reports:
            for key, value in metrics.items():
                if key.split(".")[0] in ("rain_cum_mm", "energy_wh", "facility_energy_kwh",
                                         "it_energy_kwh"):
                    prev = last.get((device, key))
                    assert prev is None or value >= prev, (device, key, prev, value)
                    last[(device, key)] = value
                    checked[key.split(".")[0]] += 1
    assert len(checked) == 4


def test_charger_statuses_follow_ocpp(mixed_run: list[Message]) -> None:
    allowed = {
        "Available": {"Preparing", "Faulted"},
        "Preparing": {"Charging", "Available", "Faulted"},
        "Charging": {"Finishing"},
        "Finishing": {"Available"},
        "Faulted": {"Available"},
    }
    state: dict[str, str] = {}
    seen: Counter[tuple[str, str]] = Counter()
    for m in mixed_run:
        if m.device_class != "charger" or m.bad:
            continue
        if m.channel == "status":  # transitions during an outage go unreported
            for k in [k for k in state if k.startswith(f"{m.device_id}.")]:
                del state[k]
            continue
        for key, value in orjson.loads(m.payload).get("states", {}).items():
            name, point = key.split(".")
            if name != "status" or point == "0":
                continue
            k = f"{m.device_id}.{point}"
            if k in state and state[k] != value:
                assert value in allowed[state[k]], (k, state[k], value)
                seen[(state[k], value)] += 1
            state[k] = value
    assert seen[("Available", "Preparing")] and seen[("Charging", "Finishing")]


def test_datacentre_pue_and_utilisation() -> None:
    messages = run(scale=1.0, hours=24, classes=("datacenter",))
    first: dict[str, dict[str, float]] = {}
    last: dict[str, dict[str, float]] = {}
    for device, reports in _series(messages).items():
        first[device], last[device] = reports[0], reports[-1]
        for r in reports:
            assert 0.5 <= r["racks_in_service"] / r["racks_built"] <= 0.8
            assert r["facility_power_kw"] >= r["it_power_kw"]
    fac = sum(last[d]["facility_energy_kwh"] - first[d]["facility_energy_kwh"] for d in last)
    it = sum(last[d]["it_energy_kwh"] - first[d]["it_energy_kwh"] for d in last)
    assert 1.15 < fac / it < 1.25  # the provincial, energy-weighted figure
    site = [(last[d]["facility_energy_kwh"] - first[d]["facility_energy_kwh"])
            / (last[d]["it_energy_kwh"] - first[d]["it_energy_kwh"]) for d in last]
    assert min(site) < 1.16  # demonstration sites


def test_storm_lifts_a_reservoir_over_its_flood_limit_and_it_recedes() -> None:
    start = datetime(2026, 7, 1, tzinfo=UTC).timestamp()
    storm = RainEvent(start + 6 * HOUR, start + 16 * HOUR, 180.0, 0.4)
    fleet = build_fleet(0.05, 1, ["reservoir"])
    sim = Simulation(fleet, SimConfig(start=start, storms=(("520300", storm),)))
    limit = {d.device_id: float(d.attributes["flood_limit_level_m"]) for d in fleet}
    levels: dict[str, list[tuple[float, float]]] = defaultdict(list)
    five_minute: Counter[str] = Counter()
    for m in sim.run(start + 4 * 24 * HOUR):
        if m.channel == "telemetry":
            levels[m.device_id].append((m.ts, orjson.loads(m.payload)["metrics"]["level_m"]))
            if m.ts % HOUR:
                five_minute[m.device_id.split("-")[1]] += 1
    crossed = 0
    for device, series in levels.items():
        if "-520300-" not in device:
            continue
        before = [lv for t, lv in series if t <= storm.start]
        peak_t, peak = max(series, key=lambda p: p[1])
        assert before[-1] < limit[device]
        assert storm.start < peak_t < storm.end + 24 * HOUR  # rises with the storm
        if peak > limit[device]:
            crossed += 1
            assert series[-1][1] < limit[device]  # and recedes
    assert crossed >= 3
    assert five_minute["520300"] > 50  # extra 5-minute reports during the rain


def test_ice_grows_only_in_the_icing_window() -> None:
    messages = run(scale=0.02, hours=72, classes=("power_line",))
    iced: set[str] = set()
    grew = 0
    for device, reports in _series(messages).items():
        for prev, cur in itertools.pairwise(reports):
            if cur["ice_thickness_mm"] > prev["ice_thickness_mm"]:
                grew += 1
                assert in_icing_window(cur["air_temp_c"], cur["humidity_pct"]), (device, cur)
            if cur["ice_thickness_mm"] > 0:
                iced.add(device)
    assert grew > 0
    assert sum(d.split("-")[1] in ICING_REGIONS for d in iced) > len(iced) / 2


def test_no_ice_in_summer() -> None:
    start = datetime(2026, 7, 15, tzinfo=UTC).timestamp()
    messages = run(scale=0.02, hours=24, classes=("power_line",), start=start)
    assert all(r["ice_thickness_mm"] == 0 for s in _series(messages).values() for r in s)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        SimConfig(start=START, bad_share=1.5)
    with pytest.raises(ValueError):
        SimConfig(start=START, shard=3, shards=3)
