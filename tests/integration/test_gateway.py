"""The HTTP ingest gateway against the real stack: tokens from Vault, 202 only after Kafka's ack, OpenAPI-checked."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from hybridbus.adapters.config import Settings
from hybridbus.adapters.vault import KV_MOUNT, root_client
from hybridbus.ops.asyncapi import asyncapi_for
from producers.gateway import TokenStore, build_app, create_app
from producers.publisher import Publisher
from tests.integration.test_publisher import CATALOG, assert_round_trip, sample_cases
from tests.unit.ops.test_asyncapi import assert_valid


def department_token(dept: str) -> str:
    secret = root_client().secrets.kv.v2.read_secret_version(path=f"gateway/{dept}", mount_point=KV_MOUNT,
                                                             raise_on_deleted_version=True)
    return str(secret["data"]["data"]["token"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def gateway_url(stack: Settings) -> Iterator[str]:
    """The real gateway (Vault tokens, gateway Kafka identity) served by uvicorn in a thread."""
    port = _free_port()
    app = build_app(asyncapi=lambda dept: asyncapi_for(dept=dept))  # as `hbus gateway` builds it
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started, "gateway did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.parametrize(("key", "version", "payload"), sample_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_catalog_event_type_round_trips_through_the_gateway(gateway_url: str, key: str, version: int,
                                                                  payload: dict) -> None:
    dept = key.split(".")[0]
    response = httpx.post(f"{gateway_url}/v1/events/{key}",
                          json={"payload": payload, "trace_id": "it-gateway", "version": version},
                          headers={"Authorization": f"Bearer {department_token(dept)}"}, timeout=30)
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    assert_round_trip(CATALOG.get(key).ingress_topic, {event_id: (key, version, payload, dept)})


def test_gateway_refuses_bad_tokens_other_departments_and_bad_fields(gateway_url: str) -> None:
    url = f"{gateway_url}/v1/events/market.licence_granted"
    payload = next(p for k, _, p in sample_cases() if k == "market.licence_granted")
    assert httpx.post(url, json={"payload": payload}).status_code == 401
    assert httpx.post(url, json={"payload": payload}, headers={"Authorization": "Bearer nope"}).status_code == 401
    health = {"Authorization": f"Bearer {department_token('health')}"}
    assert httpx.post(url, json={"payload": payload}, headers=health).status_code == 403
    market = {"Authorization": f"Bearer {department_token('market')}"}
    bad = httpx.post(url, json={"payload": {**payload, "granted_on": 7}}, headers=market)
    assert bad.status_code == 400 and bad.json()["errors"] == [{"field": "payload.granted_on",
                                                                 "reason": "expected string, got int"}]
    forged = httpx.post(url, json={"payload": payload, "dept": "police"}, headers=market)
    assert forged.status_code == 400
    huge = httpx.post(url, content=b"{" + b" " * (2 * 1024 * 1024) + b"}", headers=market)
    assert huge.status_code == 413
    assert httpx.get(f"{gateway_url}/healthz").status_code == 200
    assert "hbus_gateway_requests_total" in httpx.get(f"{gateway_url}/metrics").text


def test_a_department_reads_its_asyncapi_document_from_the_gateway_its_openapi_links_to(gateway_url: str) -> None:
    openapi = httpx.get(f"{gateway_url}/openapi.json").json()
    link = f"{gateway_url}{openapi['externalDocs']['url']}"
    assert httpx.get(link).status_code == 401
    document = httpx.get(link, headers={"Authorization": f"Bearer {department_token('market')}"}).json()
    assert_valid(document)
    assert "ingress.market.licence_granted" in document["channels"]
    assert not any(topic.startswith("ingress.") and ".market." not in topic for topic in document["channels"])


def test_gateway_answers_503_with_retry_after_when_kafka_does_not_ack(stack: Settings) -> None:
    publisher = Publisher.for_gateway(catalog=CATALOG, ack_timeout=1.0,
                                      **{"bootstrap.servers": "127.0.0.1:1", "reconnect.backoff.max.ms": 200})
    app = create_app(publisher, TokenStore.static({"market": "t"}), ack_timeout=1.0)
    payload = next(p for k, _, p in sample_cases() if k == "market.licence_granted")
    response = TestClient(app).post("/v1/events/market.licence_granted", json={"payload": payload, "event_id": "e-503"},
                                    headers={"Authorization": "Bearer t"})
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json()["event_id"] == "e-503"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_gateway_conforms_to_its_openapi_document(gateway_url: str, mode: GenerationMode) -> None:
    """Schemathesis generates requests from /openapi.json and checks every answer against the document.

    Positive data must be accepted (202, published to Kafka); negative data must be refused with a 4xx.
    """
    api = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) == len(CATALOG.latest())
    statuses: dict[int, int] = {}
    for operation in operations:
        token = department_token(operation.path.rsplit("/", 1)[-1].split(".")[0])

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, timeout=30)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        check()
    if mode is GenerationMode.POSITIVE:
        assert set(statuses) == {202}, statuses
    else:
        assert {400, 401} <= set(statuses), statuses
