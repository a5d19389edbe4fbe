"""Provisions the simulated fleet through the service's HTTP API: a bulk
`POST <url>/api/v1/devices` of a JSON list of device records, in chunks."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import orjson

from ingest.simulate.fleet import Device

PATH = "/api/v1/devices"
CHUNK = 5000


class ProvisionError(Exception):
    """The service refused or could not take the fleet's registration."""


def ocpp_keys(base_url: str, token: str | None, charge_points: Sequence[str],
              timeout: float = 30.0) -> dict[str, str]:
    """A new OCPP key for each charge point (`POST /api/v1/devices/<id>/ocpp-key`)."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"

    def one(cp: str) -> tuple[str, str]:
        url = f"{base_url.rstrip('/')}/api/v1/devices/{cp}/ocpp-key"
        req = urllib.request.Request(url, data=b"", headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return cp, orjson.loads(resp.read())["key"]
        except urllib.error.HTTPError as exc:
            raise ProvisionError(f"{url} answered HTTP {exc.code}: no OCPP key for {cp}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ProvisionError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None

    # One request per charge point (a key is shown once); a few at a time.
    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(pool.map(one, charge_points))


def provision(base_url: str, token: str | None, fleet: Sequence[Device],
              chunk: int = CHUNK, timeout: float = 30.0) -> int:
    """POST the fleet in chunks; returns the number of devices sent. Raises
    ProvisionError with a message fit for the operator."""
    url = base_url.rstrip("/") + PATH
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    sent = 0
    for i in range(0, len(fleet), chunk):
        body = orjson.dumps([d.record() for d in fleet[i: i + chunk]])
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace").strip()
            if exc.code in (404, 405):
                raise ProvisionError(
                    f"{url} answered HTTP {exc.code}: this service has no device-provisioning "
                    "endpoint (yet); run without --provision, or upgrade the service") from None
            if exc.code in (401, 403):
                raise ProvisionError(
                    f"{url} answered HTTP {exc.code}: the token was refused (--token)") from None
            raise ProvisionError(f"{url} answered HTTP {exc.code} after {sent} devices: "
                                 f"{detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ProvisionError(f"cannot reach {url}: {reason}") from None
        sent += min(chunk, len(fleet) - i)
    return sent
