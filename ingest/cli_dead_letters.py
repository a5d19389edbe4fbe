"""`ingest dead-letters list | show | replay`: what was refused and why, read from the
database; replay runs the chosen letters through today's adapters (ingest.deadletters)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters import CLASSES
from ingest import audit, deadletters
from ingest.clidb import CliError, run
from ingest.config import Config
from ingest.dispatch import Dispatcher


def _time(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time, got {text!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", choices=deadletters.ALL_REASONS, help="only this reason")
    p.add_argument("--class", dest="device_class", choices=[c.name for c in CLASSES], help="only this class")
    p.add_argument("--device", help="only this device id")
    p.add_argument("--topic-prefix", help="only topics starting with this text")
    p.add_argument("--since", type=_time, help="received at or after (ISO 8601; UTC if no zone)")
    p.add_argument("--until", type=_time, help="received before")


def _filter(args: argparse.Namespace, replayed: bool | None) -> deadletters.Filter:
    return deadletters.Filter(
        reason=args.reason,
        device_class=args.device_class,
        device_id=args.device,
        topic_prefix=args.topic_prefix,
        since=args.since,
        until=args.until,
        replayed=replayed,
    )


def add_parser(sub: Any) -> None:
    dl = sub.add_parser(
        "dead-letters",
        help="list, show and replay the messages that were refused",
        description="Dead letters are the messages the service refused, with the reason and the "
        "raw bytes. `replay` runs the chosen ones through today's adapters and settings: what "
        "decodes now is stored as the worker stores it (once, however often it runs) and marked "
        "replayed; what still fails stays. See docs/devices.md.",
    )
    dls = dl.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = dls.add_parser("list", help="newest first", description="List dead letters, newest first.")
    _filters(ls)
    ls.add_argument("--replayed", choices=("yes", "no", "any"), default="any")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(dl_func=cmd_list)
    show = dls.add_parser("show", help="one dead letter with its payload", description="Show one "
                          "dead letter: topic, reason, detail, time and the raw payload.")  # fmt: skip
    show.add_argument("id", type=int)
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.set_defaults(dl_func=cmd_show)
    rp = dls.add_parser(
        "replay",
        help="run dead letters through today's adapters",
        description="Replay the dead letters the filters choose (not replayed yet), oldest first. "
        "Recorded in the audit trail as cli:<user>.",
    )
    _filters(rp)
    rp.add_argument("--limit", type=int, default=100_000, help="at most this many (default 100000)")
    rp.set_defaults(dl_func=cmd_replay)


def _iso(ts: datetime | None) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else "-"


def cmd_list(cfg: Config, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 100_000:
        raise CliError("--limit: from 1 to 100000", 2)
    replayed = {"yes": True, "no": False, "any": None}[args.replayed]
    f = _filter(args, replayed)

    async def go(conn: Any) -> list[Any]:
        rows, _ = await deadletters.page(conn, f, args.limit)
        return rows

    rows = run(cfg.database, go)
    if args.format == "json":
        out = [{**dict(r), "received_at": _iso(r["received_at"]), "replayed_at": _iso(r["replayed_at"])}
               for r in rows]  # fmt: skip
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return 0
    if not rows:
        print("no dead letters match", file=sys.stderr)
        return 0
    print(f"{'id':>8}  {'received (UTC)':20}  {'reason':16}  {'topic':44}  detail")
    for r in rows:
        mark = " [replayed]" if r["replayed_at"] else ""
        print(f"{r['id']:>8}  {_iso(r['received_at']):20}  {r['reason']:16}  {r['topic'][:44]:44}  "
              f"{r['detail'][:100]}{mark}")  # fmt: skip
    return 0


def cmd_show(cfg: Config, args: argparse.Namespace) -> int:
    async def go(conn: Any) -> Any:
        return await deadletters.get(conn, args.id)

    row = run(cfg.database, go)
    if row is None:
        raise CliError(f"no dead letter {args.id}")
    payload = bytes(row["payload"])
    text = deadletters.text_of(payload)
    if args.format == "json":
        out = {k: row[k] for k in ("id", "topic", "reason", "detail", "device_class", "device_id")}
        out |= {"received_at": _iso(row["received_at"]), "replayed_at": _iso(row["replayed_at"])}
        out |= {"payload_text": text, "payload_hex": payload.hex()}
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"id        {row['id']}\ntopic     {row['topic']}\nreceived  {_iso(row['received_at'])}")
    print(f"reason    {row['reason']}\ndetail    {row['detail']}\nreplayed  {_iso(row['replayed_at'])}")
    print(f"payload   {len(payload)} bytes" + ("" if text is not None else ", not UTF-8 (hex below)"))
    if text is not None:
        print(text)
    else:
        print("\n".join(payload[i : i + 16].hex(" ") for i in range(0, len(payload), 16)))
    return 0


def cmd_replay(cfg: Config, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 10_000_000:
        raise CliError("--limit: from 1 to 10000000", 2)
    f = _filter(args, None)

    async def go(conn: Any) -> deadletters.ReplayResult:
        result = await deadletters.replay(conn, Dispatcher.for_config(cfg), f, args.limit)
        await audit.record(conn, audit.cli_actor(), "replay", "dead_letters",
                           {"filter": f.as_dict(), **result.as_dict()})  # fmt: skip
        return result

    result = run(cfg.database, go)
    failing = ", ".join(f"{n} {reason}" for reason, n in sorted(result.failing.items()))
    print(f"examined {result.examined}, stored {len(result.stored)}"
          + (f", still refused: {failing}" if failing else ""))  # fmt: skip
    return 0
