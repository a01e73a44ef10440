"""The Vault policies bootstrap writes for encrypted fields: departments seal their own fields and open them up to
their clearance; the gateway only seals; processors do neither. And Vault's first start: its only unseal key kept,
or a clear error."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import hvac
import pytest
import requests

from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.topology import build_topology
from hybridbus.ops.stack import bootstrap
from hybridbus.ops.stack.bootstrap import _init_and_unseal, field_keys, policy_for
from hybridbus.ops.stack.exceptions import StackError

TOPOLOGY = build_topology(load_catalog())


def allowed(identity: str, path: str) -> bool:
    """Vault's matching of a policy path: a trailing `*` is any suffix."""
    policy = policy_for(TOPOLOGY.identity(identity))
    for pattern, caps in re.findall(r'path "([^"]+)" \{ capabilities = \[([^\]]*)\] \}', policy):
        regex = re.escape(pattern)
        regex = regex[:-2] + ".*" if regex.endswith(r"\*") else regex
        if re.fullmatch(regex, path) and '"update"' in caps:
            return True
    return False


def test_a_department_seals_its_own_fields_and_opens_them_up_to_its_clearance() -> None:
    assert allowed("health", "transit/datakey/plaintext/fields-health-restricted")
    assert allowed("health", "transit/decrypt/fields-health-restricted")
    assert not allowed("health", "transit/decrypt/fields-health-important")  # above health's clearance
    assert not allowed("health", "transit/datakey/plaintext/fields-police-important")
    assert not allowed("market", "transit/decrypt/fields-health-restricted")
    assert not allowed("market", "transit/decrypt/fields-market-restricted")  # market is cleared to internal
    assert allowed("police", "transit/decrypt/fields-police-important")


def test_the_gateway_only_seals_and_processors_touch_no_field_key() -> None:
    assert allowed("gateway", "transit/datakey/plaintext/fields-health-restricted")
    assert not allowed("gateway", "transit/decrypt/fields-health-restricted")
    for processor in ("router", "egress", "archiver", "audit"):
        assert not allowed(processor, "transit/decrypt/fields-health-restricted")
        assert not allowed(processor, "transit/datakey/plaintext/fields-health-restricted")


def test_every_department_has_a_field_key_per_grade_above_public() -> None:
    names = {name for name, kind in field_keys(TOPOLOGY)}
    assert {"fields-health-restricted", "fields-police-important", "fields-market-internal"} <= names
    assert len(names) == 5 * 4 and {kind for _, kind in field_keys(TOPOLOGY)} == {"aes256-gcm96"}


class FakeSys:
    """Vault's sys endpoints as a first start sees them: uninitialised, then sealed until the key comes."""

    def __init__(self, initialised: bool = False, fails: Exception | None = None) -> None:
        self.initialised, self.sealed, self.fails, self.unsealed_with = initialised, True, fails, None

    def is_initialized(self) -> bool:
        return self.initialised

    def initialize(self, secret_shares: int, secret_threshold: int) -> dict:  # type: ignore[type-arg]
        if self.fails is not None:
            raise self.fails
        self.initialised = True
        return {"keys": ["s3cr3t"], "root_token": "root-t"}

    def is_sealed(self) -> bool:
        return self.sealed

    def submit_unseal_key(self, key: str) -> None:
        self.unsealed_with, self.sealed = key, False


class FakeClient:
    def __init__(self, sys: FakeSys) -> None:
        self.sys, self.token = sys, None


def test_a_first_start_keeps_the_unseal_key_private_and_unseals(tmp_path: Path) -> None:
    client, init_file = FakeClient(FakeSys()), tmp_path / "vault-init.json"
    _init_and_unseal(client, init_file)  # type: ignore[arg-type]
    assert client.sys.unsealed_with == "s3cr3t" and client.token == "root-t"
    assert init_file.stat().st_mode & 0o777 == 0o600


def test_initialised_data_without_its_key_asks_for_a_purge(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="unseal key was never kept.*--purge"):
        _init_and_unseal(FakeClient(FakeSys(initialised=True)), tmp_path / "vault-init.json")  # type: ignore[arg-type]


@pytest.mark.parametrize(("failure", "kind"), [
    (requests.exceptions.ReadTimeout("read timed out; unseal key s3cr3t"), "ReadTimeout"),  # no answer in time
    (hvac.exceptions.InternalServerError("raft: s3cr3t"), "InternalServerError"),  # an error answer
])
def test_a_vault_that_fails_a_first_start_is_a_stack_error_without_its_text(
        failure: Exception, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootstrap.hvac, "Client", lambda url, timeout: FakeClient(FakeSys(fails=failure)))
    cfg = SimpleNamespace(vault_addr="http://127.0.0.1:1", secrets_dir=tmp_path)
    with pytest.raises(StackError) as caught:
        bootstrap.vault_init_and_unseal(cfg)  # type: ignore[arg-type]
    assert kind in str(caught.value) and "s3cr3t" not in str(caught.value)
    assert caught.value.__cause__ is None and not (tmp_path / "vault-init.json").exists()
