"""The Vault policies bootstrap writes for encrypted fields: departments seal their own fields and open them up to
their clearance; the gateway only seals; processors do neither."""
from __future__ import annotations

import re

from hybridbus.adapters.loaders import load_catalog
from hybridbus.adapters.topology import build_topology
from hybridbus.ops.stack.bootstrap import field_keys, policy_for

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
