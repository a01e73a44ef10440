"""`VaultSession.hmac_batch`: one Transit request for many inputs, every answer or an error (never a partial one)."""
from __future__ import annotations

import base64
import time
from typing import Any

import pytest
import requests

from hybridbus.adapters.config import settings
from hybridbus.adapters.exceptions import VaultError
from hybridbus.adapters.vault import VaultSession, VaultUnavailable


class Adapter:
    def __init__(self, answer: Any) -> None:
        self.answer, self.posts = answer, []  # type: ignore[var-annotated]

    def post(self, url: str, json: Any) -> Any:
        self.posts.append((url, json))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer(json) if callable(self.answer) else self.answer


class Client:
    def __init__(self, adapter: Adapter) -> None:
        self.adapter, self.token = adapter, "t"


def session(answer: Any) -> tuple[VaultSession, Adapter]:
    vault = VaultSession("router", settings(), role_id="r", secret_id="s")
    adapter = Adapter(answer)
    vault.client = Client(adapter)  # type: ignore[assignment]
    vault.ttl, vault.expires_at = 3600, time.time() + 3600
    return vault, adapter


def echo(body: Any) -> Any:
    return {"data": {"batch_results": [{"hmac": "vault:v1:" + item["input"]} for item in body["batch_input"]]}}


def test_many_inputs_go_in_one_request_and_come_back_in_order() -> None:
    vault, adapter = session(echo)
    got = vault.hmac_batch([b"complainant:1", b"complainant:2"])
    assert got == ["vault:v1:" + base64.b64encode(d).decode() for d in (b"complainant:1", b"complainant:2")]
    ((url, body),) = adapter.posts
    assert url == "/v1/transit/hmac/pseudonym" and body["algorithm"] == "sha2-256" and len(body["batch_input"]) == 2
    assert vault.hmac_batch([]) == [] and len(adapter.posts) == 1


@pytest.mark.parametrize("answer, error", [
    (requests.ConnectionError("down"), VaultUnavailable),
    ({"data": {"batch_results": [{"hmac": "vault:v1:a"}]}}, VaultError),  # one answer for two inputs
    ({"data": {"batch_results": [{"hmac": "vault:v1:a"}, {"error": "bad input"}]}}, VaultError),
    ({"data": {}}, VaultError),
])
def test_an_outage_or_an_incomplete_answer_is_an_error(answer: Any, error: type[Exception]) -> None:
    vault, _ = session(answer)
    with pytest.raises(error) as caught:
        vault.hmac_batch([b"complainant:1", b"complainant:2"])
    assert "complainant" not in str(caught.value)  # never a value in an error
