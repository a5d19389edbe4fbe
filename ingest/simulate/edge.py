"""Simulated chargers and reservoir stations on their native protocols, straight to
the edge endpoints (`ingest simulate --via ocpp-ws`, `--via sl651-tcp`).

`--via ocpp-ws`: every charger holds its own WebSocket to the OCPP central system
(`ws://…/ocpp/<id>`, subprotocol ocpp1.6, HTTP Basic with its key when one was
provisioned), boots when its `online` birth would be published, and sends its
reports as StatusNotification and MeterValues calls, one at a time, awaiting each
CallResult as a charge point does. `--via sl651-tcp`: every reservoir dials the SL651
centre and sends its reports as hourly-report frames (function 32), awaiting the
acknowledgement. A station's id is its 10-digit address: the region code and the
station's number (`rsv-520500-00012` → `5205000012`). Metrics without an SL651
element or an OCPP measurand are not sent; deliberately bad reports stay bad (a cut
frame, a value out of range, a time in the future). Everything else goes to the
broker as before.

The sink runs its own event loop in a thread; `send` hands a message over and
blocks only when `window` messages are unanswered.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import orjson

from adapters.sl651 import Element, encode
from ingest.simulate.fleet import Device
from ingest.simulate.model import Message
from ingest.simulate.sinks import Sink

log = logging.getLogger(__name__)

__all__ = ["VIAS", "EdgeOptions", "EdgeSink", "for_via", "sl651_address"]

VIAS: Final = ("ocpp-ws", "sl651-tcp")
_KPA_PER_M: Final = 9.80665
_MEASURANDS: Final = {
    "energy_wh": ("Energy.Active.Import.Register", "Wh"),
    "power_w": ("Power.Active.Import", "W"),
    "current_a": ("Current.Import", "A"),
    "voltage_v": ("Voltage", "V"),
    "soc_pct": ("SoC", "Percent"),
    "temp_c": ("Temperature", "Celsius"),
}
_ELEMENTS: Final = {"rain_1h_mm": 0x1A, "rain_5min_mm": 0x22, "rain_cum_mm": 0x26, "battery_v": 0x38,
                    "level_m": 0x3B}  # fmt: skip


@dataclass(frozen=True, slots=True)
class EdgeOptions:
    via: frozenset[str]
    ocpp_url: str = "ws://127.0.0.1:9000/ocpp"
    sl651_host: str = "127.0.0.1"
    sl651_port: int = 5651
    keys: Mapping[str, str] = field(default_factory=dict)  # charge point id -> key
    window: int = 2000


def sl651_address(device_id: str) -> str:
    """The 10-digit station address of a simulated reservoir."""
    if len(device_id) == 10 and device_id.isdigit():
        return device_id
    _, region, number = device_id.split("-")
    return f"{region}{int(number) % 10_000:04d}"


def for_via(fleet: Sequence[Device], via: frozenset[str]) -> tuple[Device, ...]:
    """The fleet as the endpoints know it: over SL651 a station's id is its address,
    so it is provisioned and reported under that id."""
    if "sl651-tcp" not in via:
        return tuple(fleet)
    return tuple(
        replace(d, device_id=sl651_address(d.device_id)) if d.device_class == "reservoir" else d
        for d in fleet
    )


def _when(ts: object) -> datetime:
    if isinstance(ts, int | float):
        return datetime.fromtimestamp(ts / 1000, UTC)
    return datetime.fromisoformat(str(ts))


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def ocpp_calls(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A charger's v1 report as the OCPP 1.6 calls a charge point would send."""
    ts = _iso(_when(doc["ts"]))
    by_connector: dict[int, list[dict[str, str]]] = {}
    for key, value in (doc.get("metrics") or {}).items():
        name, _, point = key.partition(".")
        spec = _MEASURANDS.get(name)
        if spec is None:
            continue  # no OCPP measurand: a charge point would not send it
        # repr: the shortest text that reads back as the same float (":g" keeps 6 digits)
        sample = {"value": repr(value), "measurand": spec[0], "unit": spec[1]}
        by_connector.setdefault(int(point or 0), []).append(sample)
    calls: list[tuple[str, dict[str, Any]]] = []
    states = doc.get("states") or {}
    for key, status in states.items():
        name, _, point = key.partition(".")
        if name == "status":
            error = states.get(f"error_code.{point}", "NoError")
            payload = {"connectorId": int(point or 0), "errorCode": error, "status": status, "timestamp": ts}
            calls.append(("StatusNotification", payload))
    for connector, samples in sorted(by_connector.items()):
        mv = [{"timestamp": ts, "sampledValue": samples}]
        calls.append(("MeterValues", {"connectorId": connector, "meterValue": mv}))
    return calls


def sl651_frame(address: str, doc: dict[str, Any], serial: int) -> bytes | None:
    """A reservoir's v1 report as an SL651 hourly report (function 32)."""
    elements = []
    for key, value in (doc.get("metrics") or {}).items():
        name, _, point = key.partition(".")
        if name in _ELEMENTS:
            elements.append(Element(_ELEMENTS[name], value))
        elif name == "seepage_pressure_m" and point.startswith("P") and point[1:].isdigit():
            n = int(point[1:])
            if 1 <= n <= 8:
                elements.append(Element(0x57 + n, round(value * _KPA_PER_M, 2)))
    if not elements:
        return None
    return encode(0x32, address, _when(doc["ts"]), elements, serial)


class EdgeSink:
    """A sink that speaks OCPP or SL651 for the classes of `opts.via`, and hands the
    rest to `inner` (the broker)."""

    def __init__(self, opts: EdgeOptions, inner: Sink) -> None:
        self.opts = opts
        self.inner = inner
        self._acked = 0
        self._errors = 0
        self._window = threading.Semaphore(max(opts.window, 1))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="edge-sink", daemon=True)
        self._thread.start()
        self._devices: dict[str, _Device] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def acked(self) -> int:
        return self.inner.acked + self._acked

    @property
    def errors(self) -> int:
        return self.inner.errors + self._errors

    def _mine(self, msg: Message) -> bool:
        return (msg.device_class == "charger" and "ocpp-ws" in self.opts.via) or (
            msg.device_class == "reservoir" and "sl651-tcp" in self.opts.via
        )

    def send(self, msg: Message) -> None:
        if not self._mine(msg):
            self.inner.send(msg)
            return
        self._window.acquire()
        self._loop.call_soon_threadsafe(self._take, msg)

    def _take(self, msg: Message) -> None:
        dev = self._devices.get(msg.device_id)
        if dev is None:
            dev = self._devices[msg.device_id] = _Device(self, msg.device_id, msg.device_class)
        dev.queue.put_nowait(msg)
        if dev.task is None or dev.task.done():
            dev.task = self._loop.create_task(dev.run())

    def _done(self, ok: bool) -> None:
        if ok:
            self._acked += 1
        else:
            self._errors += 1
        self._window.release()

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def close(self, timeout: float) -> None:
        async def finish() -> None:
            tasks = [d.task for d in self._devices.values() if d.task is not None]
            if tasks:
                await asyncio.wait(tasks, timeout=timeout)
            for d in self._devices.values():
                await d.close()
            if self._session is not None:
                await self._session.close()

        asyncio.run_coroutine_threadsafe(finish(), self._loop).result(timeout + 10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self.inner.close(timeout)


class _Device:
    """One simulated device's connection, its messages in order."""

    def __init__(self, sink: EdgeSink, device_id: str, device_class: str) -> None:
        self.sink = sink
        self.id = device_id
        self.cls = device_class
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.tcp: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.seq = 0

    async def run(self) -> None:
        while not self.queue.empty():
            msg = self.queue.get_nowait()
            try:
                ok = await (self._ocpp(msg) if self.cls == "charger" else self._sl651(msg))
            except Exception as exc:  # counted as an error; the device reconnects for its next report
                log.warning("%s %s: %s: %s", self.cls, self.id, exc.__class__.__name__, exc)
                ok = False
                await self.close()
            self.sink._done(ok)

    async def _call(self, action: str, payload: dict[str, Any] | bytes) -> bool:
        assert self.ws is not None
        self.seq += 1
        uid = str(self.seq)
        text = payload if isinstance(payload, bytes) else orjson.dumps([2, uid, action, payload])
        await self.ws.send_str(text.decode())
        while True:
            reply = await asyncio.wait_for(self.ws.receive(), 60)
            if reply.type != aiohttp.WSMsgType.TEXT:
                raise aiohttp.ClientError(f"charge point {self.id}: connection ended")
            frame = orjson.loads(reply.data)
            if frame[1] == uid or isinstance(payload, bytes):
                return bool(frame[0] == 3)

    async def _ocpp(self, msg: Message) -> bool:
        if msg.channel == "status":
            if msg.payload.strip() == b"offline":
                await self.close()
                return True
            return await self._connect()
        if self.ws is None and not await self._connect():
            return False
        if msg.bad == "bad_json":
            return not await self._call("", b'[2, "cut", "MeterValues", {"connectorId": 1, "meterV')
        ok = True
        for action, payload in ocpp_calls(orjson.loads(msg.payload)):
            ok = await self._call(action, payload) and ok
        return ok

    async def _connect(self) -> bool:
        if self.ws is not None:
            return True
        key = self.sink.opts.keys.get(self.id)
        headers = {}
        if key is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{self.id}:{key}".encode()).decode()
        session = await self.sink.session()
        self.ws = await session.ws_connect(
            f"{self.sink.opts.ocpp_url.rstrip('/')}/{self.id}", protocols=("ocpp1.6",), headers=headers
        )
        return await self._call("BootNotification", {"chargePointVendor": "gz-simulator",
                                                     "chargePointModel": "sim"})  # fmt: skip

    async def _sl651(self, msg: Message) -> bool:
        if msg.channel == "status":
            return True  # a station's connection is its liveness; the centre sees it
        if msg.bad == "bad_json":
            return True  # no JSON on this wire: nothing to send
        self.seq = self.seq % 65535 + 1
        frame = sl651_frame(sl651_address(self.id), orjson.loads(msg.payload), self.seq)
        if frame is None:
            return True
        if self.tcp is None:
            opts = self.sink.opts
            self.tcp = await asyncio.open_connection(opts.sl651_host, opts.sl651_port)
        reader, writer = self.tcp
        writer.write(frame)
        ack = await asyncio.wait_for(reader.readexactly(25), 60)
        return ack[14:16] == self.seq.to_bytes(2, "big")

    async def close(self) -> None:
        if self.ws is not None:
            ws, self.ws = self.ws, None
            await ws.close()
        if self.tcp is not None:
            (_, writer), self.tcp = self.tcp, None
            writer.close()
