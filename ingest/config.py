"""Configuration: typed settings from a TOML file and `INGEST_*` environment variables.

Validation touches no network. Every error names the setting (`mqtt.url`, or the
environment variable it came from) and says what is wrong. Unknown keys are errors.
Precedence: defaults < file < environment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints
from urllib.parse import parse_qs, unquote, urlsplit

from adapters import CLASSES

_ONLINE = {c.name: c.online_s for c in CLASSES}


class ConfigError(ValueError):
    """A setting is missing, unknown or has a bad value; the message names it."""


@dataclass(frozen=True, slots=True)
class MqttConfig:
    url: str = "mqtt://127.0.0.1:1883"
    prefix: str = "gz"
    group: str = "ingest"  # shared-subscription group: workers in a group split the load
    client_id: str = "ingest-1"  # fixed, so the broker keeps the session across restarts
    session_expiry_s: int = 86400
    receive_maximum: int = 65535  # in-flight window; must exceed batch.max_rows
    keepalive_s: int = 30
    # A lost connection is reconnected at once; refused attempts back off from min,
    # doubling, to max: short, because what devices publish before the worker is
    # subscribed again has no subscriber on Mosquitto (it does not restore shared
    # subscriptions) and is lost.
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 1.0
    leave_timeout_s: float = 3.0  # clean stop: time to commit what the session still delivers
    # Maximum Packet Size sent in CONNECT: the broker must not send a bigger packet (it
    # drops such a message for this worker); a bigger one is a protocol error. At least
    # the broker's own max_packet_size (256 KiB in deploy/mosquitto/mosquitto.conf).
    max_packet_size: int = 262_144
    # TLS, for mqtts:// URLs. The broker's certificate is verified against tls_ca (PEM;
    # empty: the system's CAs) for the URL's host, or for tls_server_name when the
    # certificate names the broker otherwise; tls_cert and tls_key (PEM; the key may be
    # in the certificate's file) answer a broker that requires client certificates.
    # tls_verify = false turns verification off, and only that does.
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_server_name: str = ""
    tls_verify: bool = True

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def username(self) -> str | None:
        user = urlsplit(self.url).username
        return unquote(user) if user else None

    @property
    def password(self) -> str | None:
        pw = urlsplit(self.url).password
        return unquote(pw) if pw else None

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"


@dataclass(frozen=True, slots=True)
class SourceConfig:
    kind: str = "mqtt"  # "mqtt": one broker ([mqtt]); "amqp": the RabbitMQ cluster ([amqp])


@dataclass(frozen=True, slots=True)
class AmqpConfig:
    # The cluster's nodes, comma-separated: a worker starts at a random one and fails
    # over to the next. amqps:// for TLS.
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    queue: str = "ingest"  # the quorum queue every worker consumes
    exchange: str = "amq.topic"  # where the MQTT plugin publishes
    declare: bool = True  # declare the queue (quorum, durable) and its binding at start
    prefetch: int = 10000  # unacknowledged deliveries per worker; must exceed batch.max_rows
    heartbeat_s: int = 10  # a hung worker's messages return after about 3 heartbeats
    connect_timeout_s: float = 10.0
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 5.0
    ca_file: str = ""  # PEM CA bundle for amqps://; empty: the system's
    cert_file: str = ""  # client certificate (PEM), for brokers that require one
    key_file: str = ""  # its key (PEM); empty: in cert_file
    server_name: str = ""  # the name to verify in the certificate; empty: the URL's host
    verify: bool = True  # verify the broker's certificate and name

    @property
    def urls(self) -> list[str]:
        return [u.strip() for u in self.url.split(",") if u.strip()]


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    url: str = "postgresql://postgres@127.0.0.1:5432/ingest"
    connect_timeout_s: float = 5.0
    retry_max_s: float = 10.0  # ceiling of the backoff while the database is down
    migrate_on_start: bool = True


@dataclass(frozen=True, slots=True)
class BatchConfig:
    max_rows: int = 2000  # flush when a batch holds this many messages
    max_age_ms: int = 100  # ... or when its oldest message is this old
    max_pending: int = 4  # batches waiting for the writer before intake pauses


@dataclass(frozen=True, slots=True)
class AcceptConfig:
    future_skew_s: int = 300  # reject readings stamped further ahead than this
    horizon_days: float = 400.0  # reject readings older than this
    registry_resolution_s: int = 30  # last_seen is written at most this often per device


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    role: str  # "read" or "admin"
    sha256: str  # hex digest of the bearer token


@dataclass(frozen=True, slots=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    tokens: tuple[Token, ...] = ()


@dataclass(frozen=True, slots=True)
class RollupConfig:
    interval_s: float = 300.0  # periodic rollup of the plan's indicators
    pue_window_days: float = 365.0  # trailing window of the average PUE; shorter is interim
    pue_category: int = 1  # Green Grid category of the headline PUE (1 UPS, 2 PDU, 3 IT input)
    catalogue: str = ""  # indicator catalogue file; empty: the one shipped with the package
    # A device is online when it reported within this many seconds (per class); the
    # defaults are the classes' declarations (DeviceClass.online_s), one field per
    # class (tests/ingest/test_config.py checks that every class has one).
    online_reservoir_s: int = _ONLINE["reservoir"]
    online_power_line_s: int = _ONLINE["power_line"]
    online_charger_s: int = _ONLINE["charger"]
    online_datacenter_s: int = _ONLINE["datacenter"]

    def online_s(self, device_class: str) -> int:
        value: int = getattr(self, f"online_{device_class}_s")
        return value


@dataclass(frozen=True, slots=True)
class OcppConfig:
    """The OCPP 1.6J central system (`ws[s]://host:port/ocpp/<charge point id>`)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9000
    auth: str = "basic"  # "basic": HTTP Basic with provisioned keys; "open": no password (labs)
    tls_cert: str = ""  # PEM certificate chain and key: wss:// (security profile 2)
    tls_key: str = ""
    heartbeat_interval_s: int = 300  # told to charge points in the BootNotification answer
    id_tags: str = "accept_all"  # or "provisioned": only idTags in the ocpp_id_tags table
    data_transfer_vendors: str = ""  # comma-separated vendorIds whose DataTransfer is Accepted
    max_frame_bytes: int = 65536


@dataclass(frozen=True, slots=True)
class Sl651Config:
    """The SL 651-2014 centre: a TCP server that RTUs dial."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 5651
    mode: str = "M2"  # M1: never reply; M2/M3: acknowledge every report after commit
    reply_end: str = "ESC"  # end of the acknowledgement: ESC (station stays online) or EOT


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    dead_letters_days: float = 30.0  # dead letters older than this are deleted (replayed or not)
    interval_s: float = 3600.0  # how often the service applies it


@dataclass(frozen=True, slots=True)
class Config:
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    amqp: AmqpConfig = field(default_factory=AmqpConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    accept: AcceptConfig = field(default_factory=AcceptConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    rollup: RollupConfig = field(default_factory=RollupConfig)
    ocpp: OcppConfig = field(default_factory=OcppConfig)
    sl651: Sl651Config = field(default_factory=Sl651Config)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    log_level: str = "INFO"

    def replace(self, **sections: Any) -> Config:
        return dataclasses.replace(self, **sections)


_SECTIONS: dict[str, type[Any]] = {
    "mqtt": MqttConfig,
    "source": SourceConfig,
    "amqp": AmqpConfig,
    "database": DatabaseConfig,
    "batch": BatchConfig,
    "accept": AcceptConfig,
    "http": HttpConfig,
    "rollup": RollupConfig,
    "ocpp": OcppConfig,
    "sl651": Sl651Config,
    "retention": RetentionConfig,
}

T = TypeVar("T")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _coerce(where: str, kind: Any, value: Any) -> Any:
    """Turn a TOML or environment value into `kind`, or raise naming `where`."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return value
    if kind == tuple[Token, ...]:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list of {{name, role, sha256}} tables")
        tokens = []
        for i, item in enumerate(value):
            if not isinstance(item, dict) or set(item) != {"name", "role", "sha256"}:
                raise ConfigError(f"{where}[{i}]: expected keys name, role, sha256")
            if item["role"] not in ("read", "admin"):
                raise ConfigError(f"{where}[{i}].role: expected read or admin")
            digest = str(item["sha256"]).lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigError(f"{where}[{i}].sha256: expected 64 hex digits")
            tokens.append(Token(str(item["name"]), item["role"], digest))
        return tuple(tokens)
    raise ConfigError(f"{where}: unsupported setting type {kind}")  # pragma: no cover


def _build(section: str, cls: type[T], values: Mapping[str, Any], origin: Mapping[str, str]) -> T:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in values.items():
        where = origin.get(key, f"{section}.{key}")
        if key not in names:
            raise ConfigError(f"{where}: unknown setting (known: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(where, hints[key], value)
    return cls(**kwargs)


def _check(cfg: Config) -> None:
    def need(ok: bool, where: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{where}: {what}")

    m = cfg.mqtt
    parts = urlsplit(m.url)
    need(parts.scheme in ("mqtt", "mqtts"), "mqtt.url", f"scheme must be mqtt or mqtts: {m.url!r}")
    need(bool(parts.hostname), "mqtt.url", f"no host in {m.url!r}")
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError:
        raise ConfigError(f"mqtt.url: bad port in {m.url!r}") from None
    need(bool(m.prefix) and not set("+#/") & set(m.prefix), "mqtt.prefix", "no '/', '+', '#'")
    need(bool(m.group) and not set("+#/") & set(m.group), "mqtt.group", "no '/', '+', '#'")
    need(0 < len(m.client_id) <= 128, "mqtt.client_id", "1 to 128 characters")
    need(0 <= m.session_expiry_s <= 0xFFFFFFFF, "mqtt.session_expiry_s", "0 to 4294967295")
    need(1 <= m.receive_maximum <= 65535, "mqtt.receive_maximum", "1 to 65535")
    need(m.keepalive_s >= 5, "mqtt.keepalive_s", "at least 5")
    need(1024 <= m.max_packet_size <= 268_435_455, "mqtt.max_packet_size", "1024 to 268435455 bytes")
    need(0 < m.reconnect_min_s <= m.reconnect_max_s, "mqtt.reconnect_min_s", "0 < min <= max")
    need(0 <= m.leave_timeout_s <= 60, "mqtt.leave_timeout_s", "0 to 60 seconds")
    for key in ("tls_ca", "tls_cert", "tls_key", "tls_server_name"):
        value = getattr(m, key)
        need(not value or m.tls, f"mqtt.{key}", "set, but mqtt.url is not an mqtts:// URL")
        if value and key != "tls_server_name":
            need(Path(value).is_file(), f"mqtt.{key}", f"no such file: {value}")
    need(m.tls_verify or m.tls, "mqtt.tls_verify", "set, but mqtt.url is not an mqtts:// URL")
    need(not m.tls_key or bool(m.tls_cert), "mqtt.tls_key", "set without mqtt.tls_cert")
    need(cfg.source.kind in ("mqtt", "amqp"), "source.kind", f"mqtt or amqp, got {cfg.source.kind!r}")
    q = cfg.amqp
    need(bool(q.urls), "amqp.url", "at least one amqp:// or amqps:// URL")
    for u in q.urls:
        up = urlsplit(u)
        need(up.scheme in ("amqp", "amqps"), "amqp.url", f"scheme must be amqp or amqps: {u!r}")
        need(bool(up.hostname), "amqp.url", f"no host in {u!r}")
        try:
            up.port  # noqa: B018 - urlsplit validates the port lazily
        except ValueError:
            raise ConfigError(f"amqp.url: bad port in {u!r}") from None
    need(bool(q.queue), "amqp.queue", "not empty")
    need(1 <= q.prefetch <= 65535, "amqp.prefetch", "1 to 65535")
    need(q.heartbeat_s >= 1, "amqp.heartbeat_s", "at least 1")
    need(0 < q.reconnect_min_s <= q.reconnect_max_s, "amqp.reconnect_min_s", "0 < min <= max")
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(q, name)
        need(not path or Path(path).is_file(), f"amqp.{name}", f"no such file: {path!r}")
    need(not q.key_file or bool(q.cert_file), "amqp.key_file", "needs amqp.cert_file")
    db = urlsplit(cfg.database.url)
    need(
        db.scheme in ("postgres", "postgresql"),
        "database.url",
        f"must be a postgresql:// URL, got {cfg.database.url!r}",
    )
    # TLS comes from the URL (asyncpg reads sslmode, sslrootcert, sslcert, sslkey),
    # for every connection the service and the commands open.
    query = parse_qs(db.query)
    for mode in query.get("sslmode", []):
        need(mode in _SSLMODES, "database.url", f"sslmode {mode!r}: expected one of {', '.join(_SSLMODES)}")
    for key in ("sslrootcert", "sslcert", "sslkey"):
        for value in query.get(key, []):
            need(Path(value).is_file(), "database.url", f"{key}: no such file: {value}")
    b = cfg.batch
    need(1 <= b.max_rows <= 100_000, "batch.max_rows", "1 to 100000")
    need(1 <= b.max_age_ms <= 60_000, "batch.max_age_ms", "1 to 60000")
    need(1 <= b.max_pending <= 64, "batch.max_pending", "1 to 64")
    need(
        b.max_rows < m.receive_maximum,
        "batch.max_rows",
        f"must be below mqtt.receive_maximum ({m.receive_maximum}): acknowledgement waits for "
        "the commit, so a batch larger than the in-flight window could never fill",
    )
    need(
        cfg.source.kind != "amqp" or b.max_rows < q.prefetch,
        "batch.max_rows",
        f"must be below amqp.prefetch ({q.prefetch}): acknowledgement waits for the commit",
    )
    a = cfg.accept
    need(a.future_skew_s >= 0, "accept.future_skew_s", "not negative")
    need(a.horizon_days > 0, "accept.horizon_days", "positive")
    need(a.registry_resolution_s >= 0, "accept.registry_resolution_s", "not negative")
    need(0 <= cfg.http.port <= 65535, "http.port", "0 (any free port) to 65535")
    r = cfg.rollup
    need(r.interval_s >= 1, "rollup.interval_s", "at least 1")
    need(1 <= r.pue_window_days <= 3660, "rollup.pue_window_days", "1 to 3660")
    need(r.pue_category in (1, 2, 3), "rollup.pue_category", "1, 2 or 3 (0 is peak power, not energy)")
    for c in CLASSES:
        need(r.online_s(c.name) >= 1, f"rollup.online_{c.name}_s", "at least 1")
    o = cfg.ocpp
    need(0 <= o.port <= 65535, "ocpp.port", "0 (any free port) to 65535")
    need(o.auth in ("basic", "open"), "ocpp.auth", "basic or open")
    need(bool(o.tls_cert) == bool(o.tls_key), "ocpp.tls_cert", "set together with ocpp.tls_key")
    need(10 <= o.heartbeat_interval_s <= 86400, "ocpp.heartbeat_interval_s", "10 to 86400")
    need(o.id_tags in ("accept_all", "provisioned"), "ocpp.id_tags", "accept_all or provisioned")
    need(1024 <= o.max_frame_bytes <= 16 << 20, "ocpp.max_frame_bytes", "1024 to 16777216")
    sl = cfg.sl651
    need(0 <= sl.port <= 65535, "sl651.port", "0 (any free port) to 65535")
    need(sl.mode in ("M1", "M2", "M3"), "sl651.mode", "M1, M2 or M3")
    need(sl.reply_end in ("ESC", "EOT"), "sl651.reply_end", "ESC or EOT")
    need(cfg.retention.dead_letters_days > 0, "retention.dead_letters_days", "positive")
    need(cfg.retention.interval_s >= 1, "retention.interval_s", "at least 1")
    need(
        cfg.log_level in ("DEBUG", "INFO", "WARNING", "ERROR"),
        "log_level",
        "DEBUG, INFO, WARNING or ERROR",
    )


_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# Environment variables that are not `INGEST_<SECTION>_<KEY>`.
_ENV_ALIASES = {
    "INGEST_MQTT_URL": ("mqtt", "url"),
    "INGEST_DATABASE_URL": ("database", "url"),
    "INGEST_LOG_LEVEL": ("", "log_level"),
}


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, tuple[str, str]]]:
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for name, value in env.items():
        if not name.startswith("INGEST_") or name == "INGEST_CONFIG":
            continue
        if name in _ENV_ALIASES:
            section, key = _ENV_ALIASES[name]
        else:
            rest = name[len("INGEST_") :].lower()
            section, _, key = rest.partition("_")
            if section not in _SECTIONS or not key:
                raise ConfigError(
                    f"{name}: unknown environment setting "
                    f"(expected INGEST_<{'|'.join(s.upper() for s in _SECTIONS)}>_<KEY>)"
                )
        out.setdefault(section, {})[key] = (value, name)
    return out


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load settings from `path` (or $INGEST_CONFIG) and the environment."""
    env = os.environ if env is None else env
    path = path or env.get("INGEST_CONFIG") or None
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p}: {exc}") from None
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    origin: dict[str, dict[str, str]] = {}
    for key, value in raw.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a [{key}] table")
            sections[key] = dict(value)
        elif key == "log_level":
            top[key] = value
        else:
            raise ConfigError(f"{key}: unknown setting (known: {', '.join([*_SECTIONS, 'log_level'])})")
    for section, items in _from_env(env).items():
        for key, (value, name) in items.items():
            if section == "":
                top[key] = value
            else:
                sections.setdefault(section, {})[key] = value
                origin.setdefault(section, {})[key] = name
    built = {
        name: _build(name, cls, sections.get(name, {}), origin.get(name, {}))
        for name, cls in _SECTIONS.items()
    }
    log_level = _coerce("log_level", str, top.get("log_level", "INFO")).upper()
    cfg = Config(log_level=log_level, **built)
    _check(cfg)
    return cfg
