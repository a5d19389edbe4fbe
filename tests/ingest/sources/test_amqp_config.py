"""The durable transport's settings: validated without connecting, errors naming them."""

from __future__ import annotations

import pytest

from ingest.config import ConfigError, load


def test_defaults_and_node_list() -> None:
    cfg = load(None, {"INGEST_SOURCE_KIND": "amqp", "INGEST_AMQP_URL": "amqp://a:5672/, amqps://b:5671/"})
    assert cfg.source.kind == "amqp"
    assert cfg.amqp.urls == ["amqp://a:5672/", "amqps://b:5671/"]
    assert cfg.amqp.verify and cfg.amqp.queue == "ingest"


@pytest.mark.parametrize(
    ("env", "where"),
    [
        ({"INGEST_SOURCE_KIND": "kafka"}, "source.kind"),
        ({"INGEST_AMQP_URL": "mqtt://a:1883"}, "amqp.url"),
        ({"INGEST_AMQP_URL": "amqp://a:notaport/"}, "amqp.url"),
        ({"INGEST_AMQP_URL": " , "}, "amqp.url"),
        ({"INGEST_AMQP_PREFETCH": "0"}, "amqp.prefetch"),
        ({"INGEST_AMQP_CA_FILE": "/nonexistent/ca.pem"}, "amqp.ca_file"),
        ({"INGEST_AMQP_KEY_FILE": "/etc/hostname"}, "amqp.key_file"),
        ({"INGEST_SOURCE_KIND": "amqp", "INGEST_AMQP_PREFETCH": "1000"}, "batch.max_rows"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], where: str) -> None:
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load(None, env)
