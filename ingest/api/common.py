"""What every API handler shares: JSON errors, bearer-token roles, parameter parsing."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import orjson
from aiohttp import web

from ingest.appctx import CTX
from ingest.config import Token, hash_token
from ingest.indicators.regions import UNKNOWN, region_keys


def error(status: int, code: str, message: str, parameter: str | None = None) -> web.HTTPException:
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if parameter is not None:
        body["parameter"] = parameter
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
        413: web.HTTPRequestEntityTooLarge,
        415: web.HTTPUnsupportedMediaType,
        503: web.HTTPServiceUnavailable,
    }
    exc_cls = classes[status]
    headers = {"Content-Type": "application/json"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="ingest"'
    if exc_cls is web.HTTPRequestEntityTooLarge:
        return web.HTTPRequestEntityTooLarge(
            max_size=0, actual_size=0, text=orjson.dumps({"error": body}).decode(), headers=headers
        )
    exc: web.HTTPException = exc_cls(text=orjson.dumps({"error": body}).decode(), headers=headers)
    return exc


def bad(parameter: str, message: str) -> NoReturn:
    raise error(400, "bad_parameter", f"{parameter}: {message}", parameter)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
    )


def token_of(request: web.Request) -> Token | None:
    """The caller's token, or None for an anonymous reader. With no tokens configured,
    callers are readers (a development default: see docs/api.md); admin always needs a token."""
    tokens = request.app[CTX].cfg.http.tokens
    header = request.headers.get("Authorization")
    if header is None:
        if not tokens:
            return None
        raise error(401, "unauthorized", "missing Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise error(401, "unauthorized", "expected Authorization: Bearer <token>")
    digest = hash_token(token.strip())
    for t in tokens:
        if hmac.compare_digest(t.sha256, digest):
            return t
    raise error(401, "unauthorized", "unknown token")


def role_of(request: web.Request) -> str:
    token = token_of(request)
    return "read" if token is None else token.role


def actor(request: web.Request) -> str:
    """Who the audit trail names: the token's name."""
    token = token_of(request)
    return "anonymous" if token is None else token.name


def require(request: web.Request, role: str) -> None:
    have = role_of(request)
    if role == "admin" and have != "admin":
        raise error(403, "forbidden", "this endpoint needs a token with the admin role")


def region_param(request: web.Request) -> str:
    region = request.query.get("region", "520000")
    if region.lower() == "guian":
        region = "guian"
    if region not in region_keys() and region != UNKNOWN:
        bad("region", f"unknown region {region!r}: see GET /api/v1/regions")
    return region


def time_param(request: web.Request, name: str, default: datetime) -> datetime:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        bad(name, f"expected an ISO 8601 time with a zone, got {raw!r}")
    if ts.tzinfo is None:
        bad(name, f"the time {raw!r} has no zone (add Z or +08:00)")
    if not _EARLIEST <= ts <= _LATEST:
        bad(name, "from 1970 to 9000")
    return ts


_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def step_param(request: web.Request, default: timedelta) -> timedelta:
    raw = request.query.get("step")
    if raw is None:
        return default
    text = raw.strip().lower()
    try:
        seconds = int(text[:-1]) * _UNITS[text[-1]] if text and text[-1] in _UNITS else int(text)
    except ValueError:
        bad("step", f"expected seconds or a duration like 15m, 1h, 1d; got {raw!r}")
    if not 60 <= seconds <= 366 * 86400:
        bad("step", "from 1 minute to 366 days")
    return timedelta(seconds=seconds)


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        bad(name, f"expected an integer, got {raw!r}")
    if not lo <= value <= hi:
        bad(name, f"expected {lo} to {hi}, got {value}")
    return value


def etag_response(request: web.Request, body: bytes, content_type: str) -> web.Response:
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    inm = request.headers.get("If-None-Match", "")
    if tag in [t.strip() for t in inm.split(",")] or inm.strip() == "*":
        return web.Response(status=304, headers={"ETag": tag})
    resp = web.Response(body=body, headers={"ETag": tag, "Cache-Control": "no-cache"})
    resp.content_type = content_type
    if content_type == "text/csv":
        resp.charset = "utf-8"
    return resp
