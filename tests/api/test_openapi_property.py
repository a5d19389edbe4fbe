"""Property-based run against the OpenAPI document (an equivalent of schemathesis,
kept to hypothesis + jsonschema, which the project already uses): for every GET
operation, generated parameters — valid, invalid and odd — must get a documented
status, never a 5xx, and a body that matches the documented schema."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from ingest.api import OPENAPI
from tests.api.test_api import Fed
from tests.indicators.plant import READ

DOC = json.loads(OPENAPI.read_text())
REGISTRY: Registry[Any] = Registry().with_resource("urn:openapi", Resource(DOC, DRAFT202012))
KNOWN = {
    "key": ["smart_chargers", "dc_average_pue", "reservoir_stations"],
    "device_id": ["res-a", "dc-1", "ch-3", "res-c"],
    "id": ["1", "2", "3"],
}


def _value(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    odd = st.text(max_size=12)
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), odd)
    if schema.get("type") == "integer":
        return st.one_of(st.integers(-10, 20000).map(str), odd)
    if schema.get("format") == "date-time":
        times = st.datetimes(
            min_value=datetime(1, 1, 2),
            max_value=datetime(9999, 12, 30),
            allow_imaginary=False,
            timezones=st.just(UTC),
        ).map(lambda t: t.isoformat())
        edges = st.sampled_from(["0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+14:00"])
        return st.one_of(times, edges, odd)
    if "pattern" in schema:  # values the document allows, and others
        return st.one_of(st.from_regex(schema["pattern"]).filter(lambda v: valid(schema, v)), odd)
    return odd


def valid(schema: dict[str, Any], value: str) -> bool:
    """Whether a parameter's text is valid by its documented schema."""
    if "enum" in schema:
        return value in schema["enum"]
    if schema.get("type") == "integer":
        if not re.fullmatch(r"-?[0-9]+", value):
            return False
        n = int(value)
        return schema.get("minimum", n) <= n <= schema.get("maximum", n)
    if schema.get("format") == "date-time":  # RFC 3339: a date, T, a time and an offset
        if not re.fullmatch(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", value):
            return False
        try:
            datetime.fromisoformat(value.upper())
        except ValueError:
            return False
    if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
        return False
    if "pattern" not in schema:
        return True
    # ECMA-262 `$` (the document's dialect) does not match before a final newline; Python's does
    pattern = schema["pattern"][:-1] + r"\Z" if schema["pattern"].endswith("$") else schema["pattern"]
    return re.search(pattern, value) is not None


# Rules a parameter's schema cannot state, written in its description: a request that
# breaks them is valid by the schemas and refused with 400 naming the parameter.
STATED = {
    "from": ("from 1970 to 9000", "must not be after"),
    "to": ("from 1970 to 9000",),
    "step": ("from 1 minute to 366 days", "more than 10000 points"),
    "metric": ("' is not a ",),  # a well-formed name that is not of the device's class
}


Request = tuple[str, str, bool]  # (template, url, valid by the document)


def _request(path: str, op: dict[str, Any]) -> st.SearchStrategy[Request]:
    path_parts: dict[str, st.SearchStrategy[str]] = {}
    query: dict[str, st.SearchStrategy[str | None]] = {}
    for p in op.get("parameters", []):
        if p["in"] == "path":
            path_parts[p["name"]] = st.one_of(
                st.sampled_from(KNOWN[p["name"]]), st.text(min_size=1, max_size=8), _value(p["schema"])
            )
        else:
            query[p["name"]] = st.one_of(st.none(), _value(p["schema"]))

    schemas = {p["name"]: p["schema"] for p in op.get("parameters", [])}

    def build(parts: dict[str, str], q: dict[str, str | None]) -> Request:
        url = path
        for name, value in parts.items():
            url = url.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
        given = {k: v for k, v in q.items() if v is not None}
        qs = urllib.parse.urlencode(given)
        ok = all(valid(schemas[k], v) for k, v in {**parts, **given}.items())
        return path, url + ("?" + qs if qs else ""), ok

    return st.builds(build, st.fixed_dictionaries(path_parts), st.fixed_dictionaries(query))


OPERATIONS = [(path, ops["get"]) for path, ops in DOC["paths"].items() if "get" in ops]
REQUESTS = st.one_of(*[_request(path, op) for path, op in OPERATIONS])


def check(base: str, template: str, url: str, documented_valid: bool) -> None:
    op = DOC["paths"][template]["get"]
    req = urllib.request.Request(base + url, headers=READ)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, ctype, body = r.status, r.headers.get_content_type(), r.read()
    except urllib.error.HTTPError as exc:
        status, ctype, body = exc.code, exc.headers.get_content_type(), exc.read()
    assert status < 500, (url, status, body[:300])
    if documented_valid and status == 400:  # the document must be as strict as the handler
        err = json.loads(body)["error"]
        stated = STATED.get(err.get("parameter", ""), ())
        assert any(s in err["message"] for s in stated) and "metric: '' " not in err["message"], (
            "valid by the document, refused",
            url,
            err,
        )
    documented = op["responses"]
    assert str(status) in documented, (url, status, body[:300])
    spec = documented[str(status)]
    if "$ref" in spec:
        spec = DOC["components"]["responses"][spec["$ref"].rsplit("/", 1)[-1]]
    if ctype == "application/json":
        schema = spec["content"]["application/json"]["schema"]
        validator = jsonschema.Draft202012Validator(
            _rebase(schema), registry=REGISTRY, format_checker=jsonschema.FormatChecker()
        )
        validator.validate(json.loads(body))
    else:
        assert ctype in spec.get("content", {}), (url, ctype)


def _rebase(schema: Any) -> Any:
    """Point the document's local refs (#/components/...) at the registered document."""
    if isinstance(schema, dict):
        return {
            k: ("urn:openapi" + v if k == "$ref" and v.startswith("#") else _rebase(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_rebase(v) for v in schema]
    return schema


async def test_get_operations_hold_to_the_document(fed: Fed) -> None:
    _, base = fed

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(REQUESTS)
    def run(request: Request) -> None:
        check(base, *request)

    await asyncio.to_thread(run)


def _param(path: str, name: str) -> dict[str, Any]:
    return next(p["schema"] for p in DOC["paths"][path]["get"]["parameters"] if p["name"] == name)


def test_what_the_handlers_refuse_the_document_refuses() -> None:
    """The requests schemathesis found valid by the document and refused with 400."""
    assert not valid(_param("/api/v1/devices", "cursor"), "")
    assert not valid(_param("/api/v1/dead-letters", "cursor"), "")
    assert not valid(_param("/api/v1/dead-letters", "cursor"), "0\n")  # `$` as JSON Schema means it
    readings = "/api/v1/devices/{device_id}/readings"
    assert not valid(_param(readings, "metric"), "") and not valid(_param(readings, "metric"), "a,,b")
    assert not valid(_param(readings, "device_id"), "")
    assert not valid(_param("/api/v1/indicators/{key}/history", "step"), "")
    csv = DOC["paths"]["/api/v1/devices"]["post"]["requestBody"]["content"]["text/csv"]["schema"]
    assert csv["minLength"] == 1
    assert valid(_param("/api/v1/indicators", "region"), "all")
