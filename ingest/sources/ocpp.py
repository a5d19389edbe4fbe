"""OCPP 1.6J central system: charge points connect to `ws[s]://host:port/ocpp/<id>`
with the `ocpp1.6` subprotocol.

Owns the WebSocket server and the charge points' connections. At the upgrade it
checks the path, the subprotocol and (security profiles 1 and 2) HTTP Basic with
the charge point id as user and its provisioned key as password: anything else is
refused before the WebSocket exists (404, 400, 401). Every frame is checked by
`ocpp_calls.parse`; a valid call goes to the intake with the topic of the `ocpp`
channel, `<prefix>/v1/charger/<id>/ocpp`, so the adapter decodes it exactly as a
frame forwarded onto MQTT. The epoch is the connection, the token the call's unique
id, and the CallResult is sent only when the intake hands the token back, after the
commit. A refused frame is a dead letter (`intake.on_rejected`) and its CallError is
sent after that is stored; the connection stays up.

A central system also decides: StartTransaction gets a transaction id from the
database (`ocpp_store`), idTags are accepted or looked up, and a StopTransaction of
a known transaction has its transactionData and meterStop stored at the
transaction's connector as the MeterValues call they amount to.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import ssl
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import orjson
from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry, Counter, Gauge

from ingest.config import OcppConfig
from ingest.sources import Intake, Message
from ingest.sources.ocpp_calls import ACTIONS, Call, CallErrorInfo, answer, call_error, call_result, parse
from ingest.sources.ocpp_store import OcppStore
from ingest.writer import TRANSIENT

log = logging.getLogger(__name__)

__all__ = ["SUBPROTOCOL", "OcppSource"]

SUBPROTOCOL: Final = "ocpp1.6"
_ID: Final = re.compile(r"[A-Za-z0-9._:\-]{1,48}")


@dataclass(eq=False, slots=True)
class _ChargePoint:
    """One charge point's connection: the epoch of its messages."""

    id: str
    ws: web.WebSocketResponse
    since: datetime
    remote: str
    # unique id -> [action, CallResult payload or an encoded CallError, messages to commit]
    pending: dict[str, list[Any]] = field(default_factory=dict)
    closed: bool = False


class OcppSource:
    """The central system as a source of the pipeline (see `ingest.sources.Source`)."""

    name = "ocpp"

    def __init__(
        self,
        cfg: OcppConfig,
        prefix: str,
        intake: Intake,
        store: OcppStore,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.cfg = cfg
        self.prefix = prefix
        self.intake = intake
        self.store = store
        self._vendors = frozenset(v.strip() for v in cfg.data_transfer_vendors.split(",") if v.strip())
        self._points: dict[str, _ChargePoint] = {}
        self._accepting = True
        self._reading = asyncio.Event()
        self._reading.set()
        self._stopped = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self.port: int | None = None
        self.listening = asyncio.Event()
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self._m_connections = Gauge(
            "ingest_ocpp_connections", "Charge points connected to the OCPP central system", registry=r
        )
        self._m_calls = Counter(
            "ingest_ocpp_calls_total",
            "OCPP calls from charge points, by action and outcome (answered after commit, refused)",
            ["action", "outcome"],
            registry=r,
        )
        self._m_upgrades = Counter(
            "ingest_ocpp_refused_upgrades_total",
            "WebSocket upgrades refused, by reason",
            ["reason"],
            registry=r,
        )

    # ---- the upgrade ----

    def _refuse(self, status: int, reason: str, text: str, **headers: str) -> web.Response:
        self._m_upgrades.labels(reason).inc()
        return web.Response(status=status, text=text + "\n", headers=headers)

    async def _upgrade(self, request: web.Request) -> web.StreamResponse:
        cp_id = request.match_info["cp_id"]
        if not _ID.fullmatch(cp_id):
            text = f"no charge point {cp_id!r:.60}: ids are 1-48 of A-Z a-z 0-9 . _ : -"
            return self._refuse(404, "bad_id", text)
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if SUBPROTOCOL not in offered:
            return self._refuse(
                400, "subprotocol", f"this central system speaks the {SUBPROTOCOL} subprotocol only"
            )
        if not self._accepting:
            return self._refuse(503, "stopping", "the central system is stopping; connect again")
        if self.cfg.auth == "basic" and not await self._authorised(request, cp_id):
            return self._refuse(
                401,
                "unauthorized",
                f"HTTP Basic with user {cp_id} and its key required",
                **{"WWW-Authenticate": 'Basic realm="ocpp"'},
            )
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,), max_msg_size=self.cfg.max_frame_bytes, autoping=True, heartbeat=None
        )
        try:
            await ws.prepare(request)
        except ConnectionError:
            self._m_upgrades.labels("gone").inc()  # the charge point gave up during the upgrade
            return ws
        peer = request.transport.get_extra_info("peername") if request.transport else None
        cp = _ChargePoint(cp_id, ws, datetime.now(UTC), f"{peer[0]}:{peer[1]}" if peer else "?")
        old = self._points.get(cp_id)
        if old is not None:
            log.info("charge point %s connected again; closing its previous connection", cp_id)
            old.closed = True
            await old.ws.close(code=1000, message=b"superseded by a new connection")
        self._points[cp_id] = cp
        self._m_connections.set(len(self._points))
        self.store.connections.connected(cp_id, cp.remote, cp.since)
        try:
            await self._serve(cp)
        finally:
            cp.closed = True
            if self._points.get(cp_id) is cp:
                del self._points[cp_id]
            self._m_connections.set(len(self._points))
            self.store.connections.disconnected(cp_id, cp.since)
        return ws

    async def _authorised(self, request: web.Request, cp_id: str) -> bool:
        credentials = _basic(request.headers.get("Authorization", ""))
        if credentials is None or credentials[0] != cp_id:
            return False
        try:
            return await self.store.key_ok(cp_id, credentials[1])
        except (*TRANSIENT, asyncpg.PostgresError) as exc:
            log.warning("cannot check the key of %s (%s): refused", cp_id, exc.__class__.__name__)
            return False

    async def _serve(self, cp: _ChargePoint) -> None:
        ws = cp.ws
        while not cp.closed:
            await self._reading.wait()
            msg = await ws.receive()
            if msg.type == WSMsgType.TEXT:
                await self._frame(cp, msg.data.encode())
            elif msg.type == WSMsgType.BINARY:
                # OCPP-J is text; the bytes are judged as the text they would be.
                await self._frame(cp, msg.data)
            else:
                return  # closed, closing or a protocol error: the connection is over

    # ---- frames ----

    def _topic(self, cp_id: str) -> str:
        return f"{self.prefix}/v1/charger/{cp_id}/ocpp"

    async def _frame(self, cp: _ChargePoint, data: bytes) -> None:
        topic = self._topic(cp.id)
        parsed = parse(data)
        if parsed is None:
            self._m_calls.labels("none", "refused").inc()
            detail = "CALLRESULT or CALLERROR, but this central system sends no calls"
            self.intake.on_rejected(self, cp, topic, data, "unsupported", detail, None)
            return
        if isinstance(parsed, CallErrorInfo):
            self._refused_frame(cp, topic, data, parsed)
            return
        try:
            messages, result = await self._decide(cp, parsed, topic, data)
        except (*TRANSIENT, asyncpg.PostgresError) as exc:
            # No answer: the charge point sends the call again after its timeout.
            log.warning("%s %s not answered: database unavailable (%s)", cp.id, parsed.action, exc)
            return
        pending = cp.pending.get(parsed.unique_id)
        if pending is None:
            cp.pending[parsed.unique_id] = [parsed.action, result, len(messages)]
        else:
            pending[1] = result
            pending[2] += len(messages)
        self.intake.on_messages(self, cp, messages)

    def _refused_frame(self, cp: _ChargePoint, topic: str, data: bytes, err: CallErrorInfo) -> None:
        self._m_calls.labels("invalid", "refused").inc()
        token = err.unique_id
        if token is not None:
            cp.pending[token] = ["", call_error(err), 1]
        self.intake.on_rejected(self, cp, topic, data, err.reason, f"{err.code}: {err.description}", token)

    async def _decide(
        self, cp: _ChargePoint, call: Call, topic: str, data: bytes
    ) -> tuple[list[Message], dict[str, Any]]:
        """The messages a valid call becomes and its CallResult payload."""
        p = call.payload
        messages: list[Message] = [(topic, data, call.unique_id)]
        info: dict[str, Any] | None = None
        tid: int | None = None
        action = call.action
        if action in ("Authorize", "StartTransaction") or (action == "StopTransaction" and "idTag" in p):
            info = await self._id_tag(p["idTag"])
        if action == "StartTransaction":
            tid = await self.store.start(cp.id, p)
        elif action == "StopTransaction":
            connector = await self.store.stop(cp.id, p, datetime.now(UTC))
            if connector is not None:
                messages.append((topic, _stop_meter_values(call, connector), call.unique_id))
        result = answer(
            call, heartbeat_interval_s=self.cfg.heartbeat_interval_s, id_tag_info=info,
            transaction_id=tid, vendors=self._vendors,
        )  # fmt: skip
        self._m_calls.labels(action if action in ACTIONS else "other", "received").inc()
        return messages, result

    async def _id_tag(self, id_tag: str) -> dict[str, Any]:
        if self.cfg.id_tags == "accept_all":
            return {"status": "Accepted"}
        return await self.store.id_tag_info(id_tag)

    # ---- the Source interface ----

    def ack(self, epoch: Hashable, tokens: list[Any]) -> None:
        cp = epoch
        if not isinstance(cp, _ChargePoint) or cp.closed:
            return  # the charge point is gone: it sends again, and the repeat is stored once
        now = datetime.now(UTC)
        frames: list[bytes] = []
        for uid in tokens:
            pending = cp.pending.get(uid) if uid is not None else None
            if pending is None:
                continue
            pending[2] -= 1
            if pending[2] > 0:
                continue  # the call's other message is in a later batch
            del cp.pending[uid]
            action, result = pending[0], pending[1]
            frames.append(result if isinstance(result, bytes) else call_result(uid, action, result, now))
        if frames:
            task = asyncio.create_task(self._send(cp, frames))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _send(self, cp: _ChargePoint, frames: list[bytes]) -> None:
        try:
            for f in frames:
                await cp.ws.send_str(f.decode())
        except (ConnectionError, RuntimeError) as exc:
            log.debug("answer to %s not sent: %s", cp.id, exc)

    def pause(self) -> None:
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    @property
    def connected(self) -> bool:
        return self.listening.is_set() and not self._stopped.is_set()

    @property
    def connections(self) -> int:
        return len(self._points)

    async def run(self) -> None:
        app = web.Application()
        app.router.add_get("/ocpp/{cp_id}", self._upgrade)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        tls: ssl.SSLContext | None = None
        if self.cfg.tls_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
        site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port, ssl_context=tls, backlog=4096)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        scheme = "wss" if tls else "ws"
        log.info("OCPP 1.6J central system on %s://%s:%s/ocpp/<id> (auth %s)",
                 scheme, self.cfg.host, self.port, self.cfg.auth)  # fmt: skip
        self.listening.set()
        flusher = asyncio.create_task(self.store.connections.run(), name="ocpp-connections")
        try:
            await self._stopped.wait()
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)

    async def stop_intake(self) -> None:
        self._accepting = False
        self.pause()

    async def close(self) -> None:
        await self.stop_intake()
        for cp in list(self._points.values()):
            cp.closed = True
            await cp.ws.close(code=1001, message=b"central system stopping")
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)
        self._stopped.set()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.store.connections.flush()


def _basic(header: str) -> tuple[str, str] | None:
    """(user, password) of an HTTP Basic Authorization header, or None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        text = base64.b64decode(encoded.strip(), validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = text.partition(":")
    return (user, password) if sep else None


def _stop_meter_values(call: Call, connector: int) -> bytes:
    """A StopTransaction's transactionData and meterStop as the MeterValues call of the
    transaction's connector: OCPP 1.6's stop names no connector, this system knows it."""
    p = call.payload
    entries = list(p.get("transactionData") or [])
    entries.append(
        {
            "timestamp": p["timestamp"],
            "sampledValue": [
                {
                    "value": str(p["meterStop"]),
                    "context": "Transaction.End",
                    "measurand": "Energy.Active.Import.Register",
                    "unit": "Wh",
                }
            ],
        }
    )
    body = {"connectorId": connector, "transactionId": p["transactionId"], "meterValue": entries}
    return orjson.dumps([2, call.unique_id, "MeterValues", body])
