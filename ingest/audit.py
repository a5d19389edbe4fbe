"""The audit trail: who provisioned, decommissioned or replayed what, issued or revoked
which charge point key or idTag, and when."""

from __future__ import annotations

import getpass
from datetime import datetime
from typing import Any

import orjson

ACTIONS = (
    "provision",
    "decommission",
    "replay",
    "ocpp_key_issued",  # a new key for a charge point (the key itself is never recorded)
    "ocpp_key_revoked",
    "id_tag_set",
    "id_tag_removed",
)


def cli_actor() -> str:
    """The actor of a command-line change: the operating-system user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (a container with a bare uid)
        return "cli"


async def record(conn: Any, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
    if action not in ACTIONS:  # pragma: no cover - the callers pass constants
        raise ValueError(f"unknown audit action {action!r}")
    await conn.execute(
        "INSERT INTO audit_log (actor, action, target, detail) VALUES ($1, $2, $3, $4::jsonb)",
        actor,
        action,
        target,
        orjson.dumps(detail).decode(),
    )


async def record_many(conn: Any, actor: str, action: str, entries: list[tuple[str, dict[str, Any]]]) -> None:
    """One entry per (target, detail), in one statement."""
    if not entries:
        return
    await conn.execute(
        "INSERT INTO audit_log (actor, action, target, detail) "
        "SELECT $1, $2, t, d::jsonb FROM unnest($3::text[], $4::text[]) AS u(t, d)",
        actor,
        action,
        [t for t, _ in entries],
        [orjson.dumps(d).decode() for _, d in entries],
    )


async def page(
    conn: Any, limit: int, before: int | None = None, action: str | None = None, since: datetime | None = None
) -> list[Any]:
    """Newest first; `before` is the id of the last entry of the previous page."""
    args: list[Any] = []
    where = []
    if before is not None:
        args.append(before)
        where.append(f"id < ${len(args)}")
    if action is not None:
        args.append(action)
        where.append(f"action = ${len(args)}")
    if since is not None:
        args.append(since)
        where.append(f"at >= ${len(args)}")
    cond = " AND ".join(where) or "true"
    return list(
        await conn.fetch(
            f"SELECT id, at, actor, action, target, detail::text AS detail FROM audit_log WHERE {cond} "
            f"ORDER BY id DESC LIMIT {int(limit) + 1}",
            *args,
        )
    )
