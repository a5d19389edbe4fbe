"""Configuration: TOML and INGEST_* environment, validated with errors that name the
setting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from adapters import CLASSES
from ingest import config
from ingest.config import ConfigError, load


def test_defaults_are_valid() -> None:
    cfg = load(env={})
    assert cfg.mqtt.port == 1883 and cfg.mqtt.group == "ingest"
    assert cfg.batch.max_rows < cfg.mqtt.receive_maximum


def test_file_then_environment(tmp_path: Path) -> None:
    f = tmp_path / "ingest.toml"
    f.write_text(
        'log_level = "debug"\n[mqtt]\nurl = "mqtts://u:p%40ss@broker.example:8883"\n'
        'client_id = "w-7"\n[batch]\nmax_rows = 2000\n'
    )
    cfg = load(f, env={"INGEST_BATCH_MAX_ROWS": "3000", "INGEST_DATABASE_URL": "postgresql://x@db/ingest"})
    assert cfg.log_level == "DEBUG"
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("broker.example", 8883, True)
    assert (cfg.mqtt.username, cfg.mqtt.password) == ("u", "p@ss")
    assert cfg.mqtt.client_id == "w-7"
    assert cfg.batch.max_rows == 3000  # the environment wins over the file
    assert cfg.database.url == "postgresql://x@db/ingest"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"INGEST_MQTT_URL": "http://broker"}, "mqtt.url"),
        ({"INGEST_MQTT_URL": "mqtt://host:99999"}, "mqtt.url"),
        ({"INGEST_DATABASE_URL": "mysql://x"}, "database.url"),
        ({"INGEST_BATCH_MAX_ROWS": "many"}, "INGEST_BATCH_MAX_ROWS"),
        ({"INGEST_BATCH_MAX_ROWS": "0"}, "batch.max_rows"),
        ({"INGEST_MQTT_RECEIVE_MAXIMUM": "100"}, "batch.max_rows"),  # batch larger than the window
        ({"INGEST_MQTT_PREFIX": "gz/x"}, "mqtt.prefix"),
        ({"INGEST_MQTT_GROUP": "a+b"}, "mqtt.group"),
        ({"INGEST_MQTT_MAX_PACKET_SIZE": "100"}, "mqtt.max_packet_size"),
        ({"INGEST_ACCEPT_HORIZON_DAYS": "-1"}, "accept.horizon_days"),
        ({"INGEST_DATABASE_MIGRATE_ON_START": "perhaps"}, "INGEST_DATABASE_MIGRATE_ON_START"),
        ({"INGEST_MQTT_COLOUR": "blue"}, "INGEST_MQTT_COLOUR"),
        ({"INGEST_WHATEVER": "1"}, "INGEST_WHATEVER"),
        ({"INGEST_LOG_LEVEL": "loud"}, "log_level"),
    ],
)
def test_bad_environment_values_name_the_setting(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        load(env=env)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[mqtt]\nport = 1883\n", "mqtt.port: unknown setting"),
        ("[batch]\nmax_age_ms = true\n", "batch.max_age_ms"),
        ("[http]\ntokens = [{name = 'a', role = 'root', sha256 = 'x'}]\n", r"http.tokens\[0\].role"),
        ("colour = 'blue'\n", "colour: unknown setting"),
        ("[mqtt\n", "config file"),
    ],
)
def test_bad_file_values_name_the_setting(tmp_path: Path, text: str, names: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=names):
        load(f, env={})


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.toml", env={})


def test_cli_reports_a_bad_setting_and_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.cli import main

    monkeypatch.setenv("INGEST_BATCH_MAX_AGE_MS", "soon")
    with pytest.raises(SystemExit) as info:
        main(["check-config"])
    assert info.value.code == 2
    assert "INGEST_BATCH_MAX_AGE_MS" in capsys.readouterr().err


def test_online_windows_default_to_the_class_declarations() -> None:
    """One field per class, its default the class's DeviceClass.online_s."""
    rollup = config.RollupConfig()
    fields = {f.name for f in dataclasses.fields(rollup) if f.name.startswith("online_")}
    assert fields == {f"online_{c.name}_s" for c in CLASSES}
    for c in CLASSES:
        assert rollup.online_s(c.name) == c.online_s
