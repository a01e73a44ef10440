"""HTTP ingest gateway for legacy department systems that cannot speak Kafka (FastAPI).

A bearer token names the department (tokens live in Vault); 202 is answered only after Kafka acknowledged.
"""
from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hybridbus.adapters.metrics import secret_read
from producers.exceptions import (
    DeliveryFailed,
    DeliveryTimeout,
    EncryptionUnavailable,
    EventTooLarge,
    InvalidEvent,
    NotOwner,
    ProducerError,
    UnknownEventType,
)
from producers.publisher import DEFAULT_MAX_BYTES, Publisher
from routing.catalog import Catalog, EventType

log = logging.getLogger("hybridbus.producers.gateway")

RETRY_AFTER_SECONDS = 5
ASYNCAPI_PATH = "/asyncapi.json"
ASYNCAPI_NOTE = (" The topics behind this gateway, as your department sees them (what it publishes, what it may "
                 "read, every Avro schema with its grades), are described as AsyncAPI 3.0 at `GET /asyncapi.json` "
                 "(same bearer token), or by `hbus catalog asyncapi --dept <dept>`.")
_BODY_OVERHEAD = 64 * 1024  # room for the JSON envelope around a payload of the full size limit

REQUESTS = Counter("hbus_gateway_requests_total", "Requests to the ingest gateway, by outcome.",
                   ["dept", "event_type", "status"])
ACK_LATENCY = Histogram("hbus_gateway_ack_seconds", "From request to Kafka acknowledgement.", ["dept"],
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))


class EventIn(BaseModel):
    """The body of `POST /v1/events/{event_type}`: the payload and, optionally, the producer's ids."""

    # Strict: a JSON `false` is not an occurred_at of 0, nor "12" a version.
    model_config = ConfigDict(extra="forbid", strict=True)

    payload: dict[str, Any] = Field(description="The event, as a JSON object with the fields of its Avro schema.")
    event_id: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[!-~]+$",
                                 description="Idempotency key; a retry must send the same id. Default: a new uuid4.")
    occurred_at: int | None = Field(None, ge=0, le=2**63 - 1, description="Epoch milliseconds. Default: now.")
    trace_id: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[!-~]+$")
    version: int | None = Field(None, ge=1, le=2**31 - 1, description="Schema version. Default: the latest.")


class Accepted(BaseModel):
    event_id: str


class FieldError(BaseModel):
    field: str
    reason: str


class Problem(BaseModel):
    detail: str
    errors: list[FieldError] = []
    event_id: str | None = None


class TokenStore:
    """Department tokens read from Vault KV `gateway/<dept>`; re-read every `refresh` s to pick up rotations."""

    def __init__(self, load: Callable[[], Mapping[str, str]], refresh: float = 60.0) -> None:
        self._load = load
        self._refresh = refresh
        self._tokens: Mapping[str, str] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenStore(departments={len(self._tokens)})"

    @classmethod
    def from_vault(cls, departments: list[str], refresh: float = 60.0) -> TokenStore:
        from hybridbus.adapters.vault import VaultSession

        session = VaultSession("gateway")

        def load() -> dict[str, str]:
            tokens = {dept: str(session.read_kv(f"gateway/{dept}")["token"]) for dept in departments}
            secret_read("gateway", "department-tokens")
            return tokens

        return cls(load, refresh)

    @classmethod
    def static(cls, tokens: Mapping[str, str]) -> TokenStore:
        return cls(lambda: dict(tokens), refresh=float("inf"))

    def _current(self) -> Mapping[str, str]:
        with self._lock:
            if not self._tokens or time.monotonic() - self._loaded_at > self._refresh:
                try:
                    self._tokens = dict(self._load())
                    self._loaded_at = time.monotonic()
                except Exception as exc:  # noqa: BLE001 - keep the tokens we hold while Vault is away
                    if not self._tokens:
                        raise
                    log.warning("gateway token refresh failed error=%s", type(exc).__name__)
            return self._tokens

    def department_of(self, token: str) -> str | None:
        """The department whose token this is; every token is compared, in constant time each."""
        found = None
        presented = token.encode("utf-8", "replace")
        for dept, expected in self._current().items():
            if hmac.compare_digest(presented, expected.encode("utf-8")):
                found = dept
        return found


def _problem(status: int, detail: str, *, errors: list[dict[str, str]] | None = None,
             event_id: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail, "errors": errors or []}
    if event_id:
        body["event_id"] = event_id
    return JSONResponse(body, status_code=status, headers=headers)


def _responses() -> dict[int | str, dict[str, Any]]:
    problem = {"model": Problem}
    return {
        202: {"model": Accepted, "description": "Kafka acknowledged the event."},
        400: {**problem, "description": "The body or the payload does not fit (field-level errors)."},
        401: {**problem, "description": "No bearer token, or not a department's token."},
        403: {**problem, "description": "The event type belongs to another department."},
        404: {**problem, "description": "No such event type in the catalog."},
        413: {**problem, "description": "The body or the encoded event is over the size limit."},
        503: {**problem, "description": "Kafka did not acknowledge in time; retry with the same event_id."},
    }


def create_app(publisher: Publisher, tokens: TokenStore, *, event_types: list[str] | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES, ack_timeout: float = 10.0,
               asyncapi: Callable[[str], Mapping[str, Any]] | None = None) -> FastAPI:
    """The gateway app around a gateway publisher (`dept=None`) and the department tokens.

    `asyncapi` (optional) makes a department's AsyncAPI document; with it the app serves `GET /asyncapi.json` to
    a department's bearer token (its own view only) and its OpenAPI links there.
    """
    if publisher.dept is not None:
        raise ProducerError("the gateway publishes with its own identity (Publisher.for_gateway)")
    max_body = max_bytes + _BODY_OVERHEAD
    known = event_types or sorted(et.key for et in publisher.encoder.catalog.latest())
    app = FastAPI(title="hybridbus ingest gateway", version="1",
                  description="Publish department events onto the bus over HTTP. "
                              "Authenticate with `Authorization: Bearer <department token>`."
                              + (ASYNCAPI_NOTE if asyncapi is not None else ""))
    request_body = {
        "required": True,
        "content": {"application/json": {"schema": EventIn.model_json_schema(ref_template="#/components/schemas/{model}")}},
    }

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)

    if asyncapi is not None:
        @app.get(ASYNCAPI_PATH, include_in_schema=False)
        async def asyncapi_document(request: Request) -> JSONResponse:
            dept = _authenticate(request, tokens)
            if dept is None:
                return _problem(401, "a department bearer token is required",
                                headers={"WWW-Authenticate": 'Bearer realm="hybridbus"'})
            return JSONResponse(await run_in_threadpool(asyncapi, dept))

    @app.post(
        "/v1/events/{event_type}",
        status_code=202,
        response_model=Accepted,
        responses=_responses(),
        openapi_extra={"requestBody": request_body, "security": [{"bearer": []}]},
        summary="Publish one event; 202 only after Kafka acknowledged it.",
    )
    async def post_event(event_type: str, request: Request) -> JSONResponse:
        started = time.monotonic()
        dept = _authenticate(request, tokens)
        if dept is None:
            REQUESTS.labels("-", "-", "401").inc()
            return _problem(401, "a department bearer token is required",
                            headers={"WWW-Authenticate": 'Bearer realm="hybridbus"'})
        label = event_type if event_type in known else "-"

        def answer(response: JSONResponse) -> JSONResponse:
            REQUESTS.labels(dept, label, str(response.status_code)).inc()
            return response

        try:
            encoder_type = publisher.encoder.event_type(event_type)
        except UnknownEventType as exc:
            return answer(_problem(404, str(exc)))
        if encoder_type.dept != dept:
            return answer(_problem(403, str(NotOwner(dept, event_type, encoder_type.dept))))
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            return answer(_problem(413, f"body of {declared} bytes is over the {max_body}-byte limit"))
        raw = await _read_limited(request, max_body)
        if raw is None:
            return answer(_problem(413, f"body is over the {max_body}-byte limit"))
        body, errors = _parse(raw)
        if body is None:
            return answer(_problem(400, "the body is not a valid event request", errors=errors))
        try:
            payload = _json_integers(publisher.encoder.event_type(event_type, body.version), body.payload)
            # In the thread pool: sealing may wait on Vault for a new data key.
            envelope = await run_in_threadpool(
                publisher.prepare, event_type, payload, event_id=body.event_id, occurred_at_ms=body.occurred_at,
                trace_id=body.trace_id, version=body.version, on_behalf_of=dept)
        except UnknownEventType as exc:  # a version the catalog does not have
            return answer(_problem(400, str(exc), errors=[{"field": "version", "reason": "unknown version"}]))
        except InvalidEvent as exc:
            problems = [{"field": _field_path(p.field), "reason": p.reason} for p in exc.problems]
            return answer(_problem(400, str(exc), errors=problems))
        except EventTooLarge as exc:
            return answer(_problem(413, str(exc), errors=[{"field": _field_path(exc.field), "reason": "too large"}]))
        except EncryptionUnavailable as exc:
            log.warning("gateway cannot seal dept=%s event_type=%s", dept, event_type)
            return answer(_problem(503, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)}))
        except ProducerError as exc:
            return answer(_problem(400, str(exc)))
        try:
            delivery = await run_in_threadpool(publisher.send, envelope, ack_timeout)
        except DeliveryTimeout:
            log.warning("gateway no ack event_id=%s dept=%s event_type=%s", envelope.event_id, dept, event_type)
            return answer(_problem(503, "Kafka did not acknowledge in time; retry with the same event_id",
                                   event_id=envelope.event_id, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}))
        except DeliveryFailed as exc:
            log.error("gateway delivery failed event_id=%s dept=%s event_type=%s reason=%s",
                      envelope.event_id, dept, event_type, exc.reason)
            return answer(_problem(503, "Kafka did not take the event; retry with the same event_id",
                                   event_id=envelope.event_id, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}))
        ACK_LATENCY.labels(dept).observe(time.monotonic() - started)
        log.info("gateway accepted event_id=%s dept=%s event_type=%s topic=%s partition=%d offset=%d",
                 delivery.event_id, dept, event_type, delivery.topic, delivery.partition, delivery.offset)
        return answer(JSONResponse({"event_id": delivery.event_id}, status_code=202))

    app.openapi_schema = None
    _complete_openapi(app, publisher.encoder.catalog, known, linked=asyncapi is not None)
    return app


def _complete_openapi(app: FastAPI, catalog: Catalog, event_types: list[str], linked: bool = False) -> None:
    """Document one path per event type, with the JSON form of its Avro schema as the payload.

    The route itself is generic and reads the body by hand (for the size limit), so FastAPI cannot infer
    this; a legacy system's developer (and schemathesis) then sees exactly which body each type accepts.
    """
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        generic = schema["paths"].pop("/v1/events/{event_type}")["post"]
        for key in event_types:
            operation = {k: v for k, v in generic.items() if k not in {"parameters", "operationId"}}
            operation["operationId"] = f"publish_{key.replace('.', '_')}"
            operation["summary"] = f"Publish one {key} event; 202 only after Kafka acknowledged it."
            operation["responses"] = {k: v for k, v in generic["responses"].items() if k not in {"404", "422"}}
            bodies = [_body_schema(et, latest=et.version == catalog.get(key).version) for et in catalog.versions(key)]
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": bodies[0] if len(bodies) == 1 else {"anyOf": bodies}}}}
            schema["paths"][f"/v1/events/{key}"] = {"post": operation}
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
        if linked:
            schema["externalDocs"] = {"description": ASYNCAPI_NOTE.strip(), "url": ASYNCAPI_PATH}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_INT_RANGES = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def _json_type(avro_type: object) -> dict[str, Any]:
    if isinstance(avro_type, list):
        return {"anyOf": [_json_type(t) for t in avro_type]}
    if isinstance(avro_type, dict):
        if avro_type.get("type") == "enum":
            return {"type": "string", "enum": list(avro_type.get("symbols", []))}
        return _json_type(avro_type.get("type"))
    if avro_type in _INT_RANGES:
        low, high = _INT_RANGES[str(avro_type)]
        return {"type": "integer", "minimum": low, "maximum": high}
    return {"string": {"type": "string"}, "null": {"type": "null"}, "boolean": {"type": "boolean"},
            "float": {"type": "number"}, "double": {"type": "number"}}.get(str(avro_type), {})


def _body_schema(event_type: EventType, latest: bool) -> dict[str, Any]:
    payload = {
        "type": "object",
        "title": f"{event_type.key} v{event_type.version}",
        "properties": {f.name: _json_type(f.avro_type) for f in event_type.fields},
        "required": [f.name for f in event_type.fields if not f.has_default],
        "additionalProperties": False,
    }
    body = EventIn.model_json_schema()
    body["properties"]["payload"] = payload
    body["properties"]["version"] = {"type": "integer", "enum": [event_type.version]}
    body["required"] = ["payload"] if latest else ["payload", "version"]
    body["title"] = f"{event_type.key} v{event_type.version} request"
    return body


def _json_integers(event_type: EventType, payload: dict[str, Any]) -> dict[str, Any]:
    """JSON has one number type: `12.0` is an integer in JSON (and JSON Schema), so an int field takes it."""
    result = dict(payload)
    for spec in event_type.fields:
        value = result.get(spec.name)
        types = spec.avro_type if isinstance(spec.avro_type, list) else [spec.avro_type]
        if isinstance(value, float) and value.is_integer() and {"int", "long"} & {str(t) for t in types}:
            result[spec.name] = int(value)
    return result


def _authenticate(request: Request, tokens: TokenStore) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return tokens.department_of(token.strip())


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it passes `limit` (a lying or missing Content-Length is not trusted)."""
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes) -> tuple[EventIn | None, list[dict[str, str]]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [{"field": "", "reason": f"body is not valid UTF-8 (byte {exc.start})"}]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [{"field": "", "reason": f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"}]
    except (ValueError, RecursionError):  # e.g. an integer of more digits than Python converts
        return None, [{"field": "", "reason": "body is not JSON this gateway accepts"}]
    if isinstance(data, dict):
        for name in ("occurred_at", "version"):  # 12.0 is an integer in JSON; strict pydantic would refuse it
            if isinstance(data.get(name), float) and data[name].is_integer():
                data[name] = int(data[name])
    try:
        return EventIn.model_validate(data), []
    except ValidationError as exc:
        # Only the location and pydantic's message: its "input" would echo the value back.
        return None, [{"field": ".".join(str(p) for p in err["loc"]), "reason": err["msg"]} for err in exc.errors()]
    except RecursionError:
        return None, [{"field": "", "reason": "body is nested too deeply"}]


def _field_path(name: str) -> str:
    if name == "occurred_at_ms":
        return "occurred_at"
    return f"payload.{name}" if name and name not in {"event_id", "trace_id"} else name


def build_app(*, ack_timeout: float = 10.0, max_bytes: int = DEFAULT_MAX_BYTES,
              asyncapi: Callable[[str], Mapping[str, Any]] | None = None) -> FastAPI:
    """The gateway as run by `hbus gateway`: Kafka identity and department tokens both from Vault."""
    publisher = Publisher.for_gateway(max_bytes=max_bytes, ack_timeout=ack_timeout)
    secret_read("gateway", "kafka-private")
    departments = sorted(publisher.encoder.catalog.departments)
    return create_app(publisher, TokenStore.from_vault(departments), max_bytes=max_bytes, ack_timeout=ack_timeout,
                      asyncapi=asyncapi)


def serve(port: int | None = None, host: str = "127.0.0.1", *, ack_timeout: float = 10.0,
          asyncapi: Callable[[str], Mapping[str, Any]] | None = None) -> None:
    import uvicorn

    from hybridbus.adapters.config import settings

    app = build_app(ack_timeout=ack_timeout, asyncapi=asyncapi)
    uvicorn.run(app, host=host, port=port or settings().ports.gateway, log_level="warning", access_log=False)
