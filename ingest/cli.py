"""The `ingest` command line."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ingest import clidb
from ingest import config as config_mod
from ingest.clidb import CliError

DESCRIPTION = """\
Ingests telemetry of Guizhou's smart-infrastructure fleet (small-reservoir stations,
overhead-line monitors, EV chargers, data-centre meters) from MQTT into
PostgreSQL/TimescaleDB, and rolls it up into the new-infrastructure plan's indicators.

Settings come from a TOML file (--config or $INGEST_CONFIG) and INGEST_* environment
variables, e.g. INGEST_MQTT_URL=mqtt://127.0.0.1:1883 and
INGEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ingest. See
docs/configuration.md for every setting.
"""


def _load(args: argparse.Namespace) -> config_mod.Config:
    try:
        return config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        print(f"ingest: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def cmd_run(args: argparse.Namespace) -> int:
    # A stop asked for while the service's modules still load (seconds on a busy
    # machine) is kept and acted on once the service runs; it is neither lost (an
    # inherited SIG_IGN, as in a background job) nor a kill before any cleanup.
    early: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: early.append(signum))

    import asyncpg

    from ingest import service
    from ingest.clidb import connect_error
    from ingest.sources.mqtt import MqttRefused

    cfg = _load(args)
    _logging(cfg.log_level)
    _use_uvloop()
    try:
        asyncio.run(service.run(cfg, early))
    except (MqttRefused, service.DatabaseTlsError) as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 1
    except config_mod.ConfigError as exc:  # e.g. a TLS file that does not load
        print(f"ingest: configuration error: {exc}", file=sys.stderr)
        return 2
    except (asyncpg.InvalidCatalogNameError, asyncpg.InvalidAuthorizationSpecificationError,
            asyncpg.InvalidPasswordError) as exc:  # fmt: skip
        raise CliError(connect_error(cfg.database.url, exc)) from None
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise CliError(f"port {cfg.http.port} on {cfg.http.host} is taken: set another with http.port "
                       "or INGEST_HTTP_PORT (0 picks a free one)", 2) from None  # fmt: skip
    return 0


def cmd_drain_session(args: argparse.Namespace) -> int:
    from ingest import service
    from ingest.sources.mqtt import MqttRefused

    cfg = _load(args)
    _logging(cfg.log_level)
    try:
        n = asyncio.run(service.drain_session(cfg, args.client_id))
    except MqttRefused as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 1
    print(f"drained the session of {args.client_id}: {n} messages committed; the session is ended")
    return 0


def cmd_durable_device(args: argparse.Namespace) -> int:
    from ingest import durable_users

    cfg = _load(args)
    password = args.password or durable_users.new_password()
    try:
        commands = durable_users.device_commands(args.device_id, password, cfg.mqtt.prefix, args.vhost)
    except ValueError as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 2
    # The commands on stdout (to pipe into a node's shell), the password on stderr (to see).
    print(
        f"device {args.device_id}: MQTT user name and client id {args.device_id}, password {password}\n"
        "run the commands on a RabbitMQ node: ... | docker-compose exec -T rabbitmq-1 sh",
        file=sys.stderr,
    )
    for c in commands:
        print(durable_users.shell(c))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from ingest import migrate

    if args.print_sql:
        if args.print_sql == "to-timescale":
            print(migrate.conversion_sql(migrate.migrations()))
        else:
            print(migrate.render(timescale=args.print_sql == "timescale"))
        return 0
    cfg = _load(args)
    _logging(cfg.log_level)

    async def go(conn: Any) -> tuple[list[str], str | None]:
        if args.to_timescale:
            done = await migrate.to_timescale(conn)
        else:
            use = {"auto": None, "timescale": True, "plain": False}[args.mode]
            done = await migrate.migrate(conn, use)
        return done, await migrate.recorded_variant(conn)

    try:
        done, variant = clidb.run(cfg.database, go)
    except migrate.MigrationError as exc:
        print(f"ingest migrate: {exc}", file=sys.stderr)
        return 1
    kind = "TimescaleDB" if variant == migrate.TIMESCALE else "plain PostgreSQL"
    print(f"applied ({kind}): {', '.join(done)}" if done else f"database is up to date ({kind})")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args)
    print(
        f"configuration is valid: mqtt {cfg.mqtt.host}:{cfg.mqtt.port}, "
        f"group {cfg.mqtt.group}, database {cfg.database.url.split('@')[-1]}"
    )
    return 0


def cmd_indicators(args: argparse.Namespace) -> int:
    import orjson

    from ingest import report
    from ingest.indicators import CatalogueError, Rollup, load_catalogue
    from ingest.indicators.regions import region_keys

    cfg = _load(args)
    region = "guian" if args.region.lower() == "guian" else args.region
    if region not in region_keys() and region != "unknown":
        print(f"ingest indicators: --region: unknown region {args.region!r}", file=sys.stderr)
        return 2
    try:
        catalogue = load_catalogue(cfg.rollup.catalogue or None)
    except CatalogueError as exc:
        print(f"ingest indicators: {exc}", file=sys.stderr)
        return 2
    rollup = Rollup(cfg.rollup, catalogue)

    async def go(conn: Any) -> Any:
        return await rollup.compute(conn)

    res = clidb.run(cfg.database, go)
    rep = report.report(catalogue, res, region)
    if args.format == "json":
        print(orjson.dumps(rep.as_json(), option=orjson.OPT_INDENT_2).decode())
        return 0
    if args.format == "csv":
        sys.stdout.write(report.to_csv([rep], rep.years).decode())
        return 0
    print(f"{'indicator':32} {'value':>14} {'target':>12} {'progress':>9}  status")
    for it in rep.items:
        targets = {k: v for k, v in it["targets"].items() if v is not None}
        last = max(targets) if targets else None
        value = it["value"]
        prog = it["progress"][last] if last else None
        flag = " (interim)" if it["interim"] else ""
        print(
            f"{it['key']:32} {'-' if value is None else f'{value:,.3f}':>14} "
            f"{'-' if last is None else f'{targets[last]:,.2f}':>12} "
            f"{'-' if prog is None else f'{prog:.1%}':>9}  {it['status']}{flag}"
        )
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    from ingest import audit, registry
    from ingest.indicators import provisioning as prov

    cfg = _load(args)
    try:
        with open(args.csv, encoding="utf-8-sig") as f:
            records = prov.parse_csv(f.read())
        prov.check_unique(records)
    except (OSError, prov.ProvisioningError) as exc:
        print(f"ingest provision: {exc}", file=sys.stderr)
        return 2

    async def go(conn: Any) -> list[str]:
        async with conn.transaction():
            refused = await registry.provision(conn, records, audit.cli_actor())
            if refused:
                raise prov.ProvisioningError("csv", f"registered under another class: {refused[:20]}")
        return refused

    try:
        clidb.run(cfg.database, go)
    except prov.ProvisioningError as exc:
        print(f"ingest provision: {exc}", file=sys.stderr)
        return 1
    print(f"provisioned {len(records)} devices")
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    code: int = args.dl_func(_load(args), args)
    return code


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional speed-up
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def cmd_simulate(args: argparse.Namespace) -> int:
    from ingest.simulate.cli import main as simulate_main

    return simulate_main(args.rest)


def cmd_demo(args: argparse.Namespace) -> int:
    from ingest import demo

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A rollup every 10 s would break the simulator's progress line: warnings only.
    logging.getLogger("ingest.indicators.runner").setLevel(logging.WARNING)
    return demo.main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ingest",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", "-c", help="TOML settings file (default: $INGEST_CONFIG)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run the ingest worker (MQTT → database, /metrics)",
        description="Run one ingest worker until SIGINT/SIGTERM. It migrates "
        "the database first (database.migrate_on_start), subscribes to the shared "
        "subscription, and serves /metrics and /healthz on http.host:http.port.",
    )
    run.set_defaults(func=cmd_run)

    drain = sub.add_parser(
        "drain-session",
        help="commit and end the parked MQTT session of a worker that is gone",
        description="Connect as CLIENT_ID (the mqtt.client_id of a worker that crashed or "
        "was removed) without subscribing, commit every message the broker kept for "
        "that session, and end it (session expiry 0), so that nothing stays parked for "
        "a worker that will not come back. A worker that stops cleanly ends its own "
        "session; this is for one that did not.",
    )
    drain.add_argument("client_id", metavar="CLIENT_ID", help="the departed worker's mqtt.client_id")
    drain.set_defaults(func=cmd_drain_session)

    dev = sub.add_parser(
        "durable-device",
        help="print the rabbitmqctl commands that add a device's user on the durable transport",
        description="Print the rabbitmqctl commands that create DEVICE_ID's user on the durable "
        "transport's RabbitMQ nodes and let it publish only under its own id "
        "(<prefix>/v1/<class>/DEVICE_ID/telemetry, sl651, ocpp, status) and subscribe only "
        "to its own commands (.../DEVICE_ID/cmd/#), as deploy/mosquitto/acl does on a plain "
        "Mosquitto. The device connects with user name and client id DEVICE_ID. Nothing is "
        "run: the commands go to a shell on a node. The prefix is mqtt.prefix.",
    )
    dev.add_argument("device_id", metavar="DEVICE_ID", help="the device id (its MQTT user name)")
    dev.add_argument("--password", help="the device's password (default: 32 random characters, printed)")
    dev.add_argument("--vhost", default="/", help="the RabbitMQ virtual host (default /)")
    dev.set_defaults(func=cmd_durable_device)

    mig = sub.add_parser(
        "migrate",
        help="apply the database migrations",
        description="Apply pending SQL migrations (safe to re-run). A new database "
        "uses TimescaleDB when the server has the extension (preloaded): tables become "
        "hypertables with compression, continuous aggregates and retention. A database "
        "keeps the variant it was first migrated with, and the command says which.",
    )
    mig.add_argument(
        "--mode",
        choices=("auto", "timescale", "plain"),
        default="auto",
        help="variant of a new database: auto-detect (default), TimescaleDB, or plain; "
        "a migrated database keeps its own and refuses the other",
    )
    mig.add_argument(
        "--to-timescale",
        action="store_true",
        help="convert a plain database to TimescaleDB in one transaction: hypertables with "
        "their rows, continuous aggregates in place of the views, the policies; the rollup "
        "then fills the aggregates with the history",
    )
    mig.add_argument(
        "--print-sql",
        choices=("timescale", "plain", "to-timescale"),
        help="print the SQL that would run for that variant (or the conversion), and exit",
    )
    mig.set_defaults(func=cmd_migrate)

    chk = sub.add_parser(
        "check-config",
        help="validate the settings and exit",
        description="Load and validate the settings without connecting.",
    )
    chk.set_defaults(func=cmd_check_config)

    ind = sub.add_parser(
        "indicators",
        help="print the plan's indicators as the fleet reports them now",
        description="Compute the plan's indicators from the database now (without storing a "
        "snapshot) and print them with their targets, progress and status. See docs/indicators.md.",
    )
    ind.add_argument("--region", default="520000", help="520000 (province, default), a prefecture "
                     "code, guian, or unknown")  # fmt: skip
    ind.add_argument("--format", choices=("table", "json", "csv"), default="table")
    ind.set_defaults(func=cmd_indicators)

    pro = sub.add_parser(
        "provision",
        help="register or update devices from a CSV file",
        description="CSV with a header: device_id, class, region, site, name, and one column per "
        "class attribute (e.g. flood_limit_level_m, rated_power_kw, pue_category, racks_built, "
        "design_ice_mm). All rows or none are applied.",
    )
    pro.add_argument("csv", help="the CSV file")
    pro.set_defaults(func=cmd_provision)
    from ingest import cli_dead_letters

    cli_dead_letters.add_parser(sub)
    sub.choices["dead-letters"].set_defaults(func=cmd_dead_letters)
    sim = sub.add_parser(
        "simulate",
        add_help=False,
        help="publish a simulated fleet over MQTT (ingest simulate --help)",
        description="Run the fleet simulator; every argument goes to it.",
    )
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    sim.set_defaults(func=cmd_simulate)

    demo = sub.add_parser(
        "demo",
        help="run everything: broker, database, service and a simulated fleet",
        description="Bring up what is missing (mosquitto on a free loopback port, the local "
        "PostgreSQL or a private one in --workdir), migrate, start the service and a simulated "
        "fleet, and print where to look. Ctrl-C stops everything it started.",
    )
    demo.add_argument("--scale", type=float, default=0.01, help="fleet size as a share of the "
                      "plan's 2024 targets (default 0.01: ~450 devices)")
    demo.add_argument("--speed", type=float, default=60.0,
                      help="simulated seconds per real second (default 60)")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--bad-share", type=float, default=0.01,
                      help="share of malformed messages, to see dead letters (default 0.01)")
    demo.add_argument("--duration", type=float, default=0.0,
                      help="stop after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--http-port", type=int, default=8080, help="0 picks a free port")
    demo.add_argument("--workdir", default=".run", help="where a private broker/database live")
    demo.add_argument("--token-file", help="keep the API tokens in this file across runs "
                      "(made on the first run, mode 600); default: new tokens every run")
    demo.add_argument("--transport", choices=("mqtt", "amqp"), default="mqtt",
                      help="mqtt: one Mosquitto; amqp: a private 3-node RabbitMQ cluster, devices "
                      "publishing MQTT 3.1.1 to it, the worker consuming its quorum queue "
                      "(docs/transport.md)")
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:  # the simulator parses its own arguments, --help included
        from ingest.simulate.cli import main as simulate_main

        return simulate_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except CliError as exc:
        print(f"ingest {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # The reader stopped (`ingest indicators | head`): that is its choice, not a
        # failure. Point stdout at /dev/null so that the flush at exit is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
