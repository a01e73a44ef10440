"""People's duties come from their Vault policies: an act needs its duty, whatever the person claims."""
from __future__ import annotations

import pytest

from hybridbus.adapters.vault import PersonToken
from hybridbus.ops.people import NotAllowed, require, roles
from hybridbus.ops.stack.bootstrap import PEOPLE, PERSON_ROLES, person_policy, person_policy_name


def test_a_person_holds_only_the_duties_their_policies_name() -> None:
    engineer = PersonToken("li.wei", ("default", person_policy_name("engineer")), "hvs.SECRET-TOKEN")
    assert roles(engineer) == {"engineer"}
    assert require(engineer, "engineer") is engineer
    with pytest.raises(NotAllowed, match="li.wei is not an approver"):
        require(engineer, "approver")
    assert "SECRET-TOKEN" not in repr(engineer)  # the token never shows


def test_each_duty_signs_with_its_own_key_only_and_every_duty_has_a_sample_person() -> None:
    signs = {role: {line.split('"')[1] for line in person_policy(role).splitlines() if "/sign/" in line}
             for role in PERSON_ROLES}
    assert signs == {"engineer": {"transit/sign/rules-proposer"}, "approver": {"transit/sign/rules-approver"},
                     "operator": {"transit/sign/boundary-operator"}, "auditor": set()}
    assert {role for _, role in PEOPLE} == set(PERSON_ROLES)
    assert not any("secret/" in person_policy(role) for role in PERSON_ROLES)  # no service's credentials
