from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from hybridbus.adapters.codec import AvroCodec
from hybridbus.adapters.config import REPO_ROOT
from hybridbus.adapters.fieldcrypt import FieldSealer, LocalKeyService, is_sealed
from hybridbus.adapters.loaders import load_catalog
from producers.gateway import TokenStore, create_app
from producers.publisher import EventEncoder, Publisher
from routing import headers as h
from tests.unit.producers.fakes import FakeProducer

CATALOG = load_catalog()
SAMPLE = json.loads((REPO_ROOT / "schemas/samples/market.licence_granted.v1.json").read_text(encoding="utf-8"))
TOKENS = {"market": "market-token", "health": "health-token"}
MARKET = {"Authorization": "Bearer market-token"}
URL = "/v1/events/market.licence_granted"


def client(mode: str = "ack", max_bytes: int = 1024 * 1024) -> tuple[TestClient, FakeProducer]:
    producer = FakeProducer(mode)
    publisher = Publisher(None, producer, EventEncoder(CATALOG, max_bytes=max_bytes), ack_timeout=0.3)
    app = create_app(publisher, TokenStore.static(TOKENS), max_bytes=max_bytes, ack_timeout=0.3)
    return TestClient(app), producer


def test_accepted_event_is_on_kafka_with_the_authenticated_department() -> None:
    http, producer = client()
    response = http.post(URL, headers=MARKET, json={"payload": SAMPLE, "event_id": "abc-1", "trace_id": "t-1"})
    assert response.status_code == 202 and response.json() == {"event_id": "abc-1"}
    [msg] = producer.sent
    assert msg.topic() == "ingress.market.licence_granted"
    assert dict(msg.headers())[h.DEPT] == b"market" and dict(msg.headers())[h.TRACE_ID] == b"t-1"
    assert AvroCodec.for_catalog(CATALOG).decode(msg.value())[1] == SAMPLE


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic market-token"}])
def test_missing_or_wrong_token_is_401(headers: dict[str, str]) -> None:
    http, producer = client()
    response = http.post(URL, headers=headers, json={"payload": SAMPLE})
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    assert producer.sent == []


def test_another_departments_event_type_is_403() -> None:
    http, producer = client()
    response = http.post("/v1/events/health.hospital_admission", headers=MARKET, json={"payload": {}})
    assert response.status_code == 403 and producer.sent == []


def test_unknown_event_type_is_404() -> None:
    http, _ = client()
    assert http.post("/v1/events/market.nothing", headers=MARKET, json={"payload": {}}).status_code == 404


def test_field_errors_are_400_and_name_each_field() -> None:
    http, producer = client()
    payload = {**SAMPLE, "granted_on": 5}
    del payload["district"]
    response = http.post(URL, headers=MARKET, json={"payload": payload})
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"payload.granted_on", "payload.district"}
    assert producer.sent == []


@pytest.mark.parametrize("body", [b"not json", b'{"payload": {"x": "\xff"}}', b'{"payload": 3}',
                                  b'{"payload": {}, "dept": "health"}', b'{"payload": {}, "occurred_at": -1}'])
def test_malformed_bodies_are_400(body: bytes) -> None:
    http, producer = client()
    response = http.post(URL, headers={**MARKET, "Content-Type": "application/json"}, content=body)
    assert response.status_code == 400 and response.json()["errors"]
    assert producer.sent == []


def test_oversize_body_is_413_by_content_length_and_by_real_size() -> None:
    http, producer = client(max_bytes=1024)
    big = {"payload": {**SAMPLE, "business_scope": "x" * 200_000}}
    assert http.post(URL, headers=MARKET, json=big).status_code == 413

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"payload": {"business_scope": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}}'

    assert http.post(URL, headers=MARKET, content=chunks()).status_code == 413
    encoded_too_big = {"payload": {**SAMPLE, "business_scope": "x" * 2000}}
    response = http.post(URL, headers=MARKET, json=encoded_too_big)
    assert response.status_code == 413 and response.json()["errors"][0]["field"] == "payload.business_scope"
    assert producer.sent == []


def test_no_ack_in_time_is_503_with_retry_after_and_the_event_id() -> None:
    http, _ = client(mode="silent")
    response = http.post(URL, headers=MARKET, json={"payload": SAMPLE, "event_id": "retry-me"})
    assert response.status_code == 503 and int(response.headers["retry-after"]) > 0
    assert response.json()["event_id"] == "retry-me"


def test_health_metrics_and_openapi_are_served() -> None:
    http, _ = client()
    http.post(URL, headers=MARKET, json={"payload": SAMPLE})
    assert http.get("/healthz").json() == {"status": "ok"}
    assert 'hbus_gateway_requests_total{dept="market",event_type="market.licence_granted",status="202"}' in \
        http.get("/metrics").text
    spec = http.get("/openapi.json").json()
    assert set(spec["paths"]) == {f"/v1/events/{et.key}" for et in CATALOG.latest()}
    operation = spec["paths"]["/v1/events/market.licence_granted"]["post"]
    assert {"202", "400", "401", "403", "413", "503"} <= set(operation["responses"])
    payload = operation["requestBody"]["content"]["application/json"]["schema"]["properties"]["payload"]
    assert set(payload["required"]) == set(SAMPLE) and payload["additionalProperties"] is False


def _admission() -> dict:
    return json.loads((REPO_ROOT / "schemas/samples/health.hospital_admission.v1.json").read_text(encoding="utf-8"))


def test_the_gateway_seals_restricted_fields_before_kafka() -> None:
    producer = FakeProducer()
    publisher = Publisher(None, producer, EventEncoder(CATALOG, sealer=FieldSealer(LocalKeyService())), ack_timeout=0.3)
    http = TestClient(create_app(publisher, TokenStore.static(TOKENS), ack_timeout=0.3))
    payload = _admission()
    response = http.post("/v1/events/health.hospital_admission", headers={"Authorization": "Bearer health-token"},
                         json={"payload": payload})
    assert response.status_code == 202
    [msg] = producer.sent
    assert payload["patient_id_number"].encode() not in msg.value()
    assert is_sealed(AvroCodec.for_catalog(CATALOG).decode(msg.value())[1]["patient_id_number"])


def test_without_a_data_key_the_gateway_answers_503_and_sends_nothing() -> None:
    http, producer = client()  # a publisher without a key service: as when Vault stayed away past the timeout
    response = http.post("/v1/events/health.hospital_admission", headers={"Authorization": "Bearer health-token"},
                         json={"payload": _admission()})
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert "could not be sealed" in response.json()["detail"] and producer.sent == []


def test_a_department_gets_its_own_asyncapi_document_and_the_openapi_links_to_it() -> None:
    asked: list[str] = []

    def document(dept: str) -> dict[str, str]:
        asked.append(dept)
        return {"asyncapi": "3.0.0", "for": dept}

    publisher = Publisher(None, FakeProducer("ack"), EventEncoder(CATALOG), ack_timeout=0.3)
    http = TestClient(create_app(publisher, TokenStore.static(TOKENS), ack_timeout=0.3, asyncapi=document))
    assert http.get("/asyncapi.json", headers=MARKET).json() == {"asyncapi": "3.0.0", "for": "market"}
    assert http.get("/asyncapi.json").status_code == 401
    assert http.get("/asyncapi.json", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert asked == ["market"]
    openapi = http.get("/openapi.json").json()
    assert openapi["externalDocs"]["url"] == "/asyncapi.json" and "AsyncAPI" in openapi["info"]["description"]
    assert "/asyncapi.json" not in openapi["paths"]
    # Without a document maker there is neither the route nor the link.
    plain, _ = client()
    assert plain.get("/asyncapi.json", headers=MARKET).status_code == 404
    assert "externalDocs" not in plain.get("/openapi.json").json()
