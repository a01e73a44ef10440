"""The catalog change the `catalog-change` drill applies: a new department with a new type, and the next version of
an exported type, which the checks accept against the catalog in force and the shipped rules, run after run."""
from __future__ import annotations

from pathlib import Path

from hybridbus.adapters.codec import schema_fingerprint
from hybridbus.adapters.loaders import load_ruleset_dir
from hybridbus.ops.arrivals import expectation
from hybridbus.ops.drills import NEXT_VERSION_OF, ONBOARDED_EVENT, onboarded_payload, onboarding_files
from hybridbus.ops.samples import load_sample
from hybridbus.runtime.catalogstore import CatalogSnapshot
from routing.catalogdiff import check_change

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = CatalogSnapshot.from_dir(ROOT / "schemas" / "avro")
RULES = load_ruleset_dir(ROOT / "routing" / "rules")


def test_the_drill_change_is_accepted_and_adds_a_department_a_type_and_a_version() -> None:
    first = CatalogSnapshot(onboarding_files(SHIPPED.files, "drill_a"))
    change, errors = check_change(SHIPPED.catalog(), first.catalog(), RULES, schema_fingerprint)
    assert errors == []
    assert change.new_departments == ("drill_a",)
    assert change.new_versions == (("drill_a.air_quality", 1), (NEXT_VERSION_OF, 2))
    # Run again on the catalog it left in force: another department, and the version after.
    second = CatalogSnapshot(onboarding_files(first.files, "drill_b"))
    change, errors = check_change(first.catalog(), second.catalog(), RULES, schema_fingerprint)
    assert errors == [] and change.new_versions == (("drill_b.air_quality", 1), (NEXT_VERSION_OF, 3))


def test_events_of_the_new_types_go_where_the_rules_say() -> None:
    catalog = CatalogSnapshot(onboarding_files(SHIPPED.files, "drill_a")).catalog()
    base = load_sample(ROOT / "schemas" / "samples", catalog.get(NEXT_VERSION_OF, 1))
    new_type, new_version = catalog.get(f"drill_a.{ONBOARDED_EVENT}"), catalog.get(NEXT_VERSION_OF, 2)
    # No rule names the new department yet: its events stay on their graded private topic.
    assert expectation(new_type, onboarded_payload(new_type, base, 1), RULES).private == {"public.drill_a.air_quality"}
    assert expectation(new_type, onboarded_payload(new_type, base, 1), RULES).public == frozenset()
    exported = expectation(new_version, onboarded_payload(new_version, base, 1), RULES)
    assert exported.public == {"public.market.licence_granted"} and exported.archive == {"market/licence_granted/"}
