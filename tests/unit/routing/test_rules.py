"""The rules model and its loader: every kind of bad file is refused with file, line and reason; rule sets
round-trip through JSON with the same digest; matching and first-match semantics."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridbus.adapters.loaders import load_rules_file, load_ruleset_dir
from routing.exceptions import RuleError
from routing.grades import Grade
from routing.rules import Match, Rule, RuleSet, Transform, View

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "routing" / "rules"
BAD = ROOT / "tests" / "fixtures" / "bad_rules"


@pytest.mark.parametrize("fixture, file, line, reason", [
    ("yaml_syntax", "rules.yaml", 5, "YAML syntax error"),
    ("unknown_top_key", "rules.yaml", 4, "expected only a top-level `rules:` list; unknown: extras"),
    ("unknown_rule_key", "rules.yaml", 7, "unknown key(s) colour (allowed: approval, derive, description, id, match, to)"),
    ("missing_id", "rules.yaml", 4, "rule has no `id`"),
    ("bad_match_key", "rules.yaml", 5, "rule 'a': unknown match key(s) department"),
    ("bad_grade", "rules.yaml", 4, "rule 'a': unknown grade 'secretish'"),
    ("core_grade", "rules.yaml", 3, "never carried by the bus"),
    ("bad_destination", "rules.yaml", 4, "rule 'a': unknown destination 'internet' (allowed: public_cloud, archive"),
    ("duplicate_id", "b.yaml", 4, "rule id 'same' is already used at "),
    ("bad_transform", "rules.yaml", 8, "view 'v' field 'text': unknown transform 'scramble'"),
    ("encrypt_transform", "rules.yaml", 8, "view 'v' field 'text': encryption never lowers a grade"),
    ("encrypt_plain", "rules.yaml", 8, "view 'v' field 'contact': encryption never lowers a grade"),
    ("generalise_kind", "rules.yaml", 8, "field 'submitted_at': generalise to one of month, date, district, age_band"),
    ("bad_view_name", "rules.yaml", 7, "view name 'Bad.View' must be lower-case letters, digits and _"),
    ("bad_version", "ruleset.yaml", 4, "ruleset.version must be a non-empty string"),
])
def test_bad_rule_directories_are_refused_with_file_line_and_reason(fixture: str, file: str, line: int, reason: str) -> None:
    with pytest.raises(RuleError) as refused:
        load_ruleset_dir(BAD / fixture)
    error = refused.value
    assert Path(error.path or "") == BAD / fixture / file
    assert error.line == line
    assert reason in error.reason
    assert str(error).startswith(f"{BAD / fixture / file}:{line}: ")


def test_duplicate_id_names_where_the_id_was_first_used() -> None:
    with pytest.raises(RuleError, match=r"a\.yaml:2"):
        load_ruleset_dir(BAD / "duplicate_id")


def test_a_directory_without_ruleset_yaml_is_refused_naming_the_directory() -> None:
    with pytest.raises(RuleError) as refused:
        load_ruleset_dir(BAD / "missing_ruleset")
    assert refused.value.path == str(BAD / "missing_ruleset")
    assert refused.value.line is None
    assert "missing ruleset.yaml" in refused.value.reason
    assert str(refused.value) == f"{BAD / 'missing_ruleset'}: missing ruleset.yaml (it names the rule-set version)"


def _write(tmp_path: Path, body: str, head: str = 'ruleset:\n  version: "t1"\n') -> Path:
    (tmp_path / "ruleset.yaml").write_text(head, encoding="utf-8")
    (tmp_path / "r.yaml").write_text(body, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("body, line, reason", [
    ("- just a list\n", 1, "expected only a top-level `rules:` list"),
    ("rules: {a: 1}\n", 1, "`rules` must be a list"),
    ("rules:\n  - plain string\n", 2, "each rule must be a mapping"),
    ("rules:\n  - id: '  '\n    match: {dept: market}\n", 2, "rule has no `id`"),
    ("rules:\n  - id: a\n", 2, "rule 'a': `match` must be a mapping"),
    ("rules:\n  - id: a\n    match: {dept: market}\n    to: public_cloud\n", 4, "`to` must be a list"),
    ("rules:\n  - id: a\n    match: {dept: market}\n    derive: {name: v}\n", 4, "`derive` must be a list of views"),
    ("rules:\n  - id: a\n    match: {dept: market}\n    derive:\n      - fields: {x: keep}\n", 5, "a derived view needs a `name`"),
    ("rules:\n  - id: a\n    match: {dept: market}\n    derive:\n      - name: v\n        colour: red\n        fields: {x: keep}\n",
     5, "unknown view key(s) colour"),
    ("rules:\n  - id: a\n    match: {dept: market}\n    derive:\n      - name: v\n        fields: {}\n", 5, "`fields` must name every"),
    ("rules:\n  - id: a\n    match: {dept: market}\n    derive:\n      - name: v\n        fields: {x: keep}\n        to: [s3]\n",
     7, "view 'v': unknown destination 's3'"),
    ("rules:\n  - id: a\n    match: {dept: market}\n    derive:\n      - name: v\n        fields:\n          x: {keep: 1}\n",
     7, "unknown transform"),
    ("rules:\n  - id: a\n    match:\n      dept: market\n      grade: core\n", 5, "never carried"),
    ("rules:\n  - id: a\n    match: {dept: market}\n  - id: b\n    match: {dept: x}\n  - id: a\n    match: {dept: y}\n",
     6, "rule id 'a' is already used at"),
])
def test_more_bad_rules_are_refused_with_their_line(tmp_path: Path, body: str, line: int, reason: str) -> None:
    with pytest.raises(RuleError) as refused:
        load_ruleset_dir(_write(tmp_path, body))
    assert refused.value.path == str(tmp_path / "r.yaml")
    assert refused.value.line == line
    assert reason in refused.value.reason


@pytest.mark.parametrize("head, line, reason", [
    ("version: x\n", 1, "expected a top-level `ruleset:` mapping"),
    ("ruleset: 3\n", 1, "expected a top-level `ruleset:` mapping"),
    ('ruleset:\n  version: "  "\n', 2, "non-empty string"),
    ("ruleset:\n  version: [1\n", 3, "YAML syntax error"),
])
def test_bad_ruleset_headers_are_refused(tmp_path: Path, head: str, line: int, reason: str) -> None:
    with pytest.raises(RuleError) as refused:
        load_ruleset_dir(_write(tmp_path, "rules: []\n", head))
    assert refused.value.path == str(tmp_path / "ruleset.yaml")
    assert refused.value.line == line
    assert reason in refused.value.reason


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    rules = _write(tmp_path, "")
    (rules / "r.yaml").write_bytes(b"rules:\n  - id: \xff\xfe\n")
    with pytest.raises(RuleError, match="not UTF-8") as refused:
        load_ruleset_dir(rules)
    assert refused.value.path == str(rules / "r.yaml")


def test_loader_parses_every_part_of_a_rule(tmp_path: Path) -> None:
    body = """\
# comment
rules:
  - id: r1
    description: 说明
    approval: REV-1
    match:
      dept: govservice
      event: citizen_feedback
      grade: Sensitive
    to: [archive, public_cloud, archive]
    derive:
      - name: v1
        fields:
          topic: keep
          text: drop
          contact: mask
          submitted_at: {generalise: month}
          district: pseudonymise
          feedback_id: {pseudonymise: tickets}
        to: [public_cloud]
  - id: r2
    match: {dept: market}
    to:
"""
    ruleset = load_ruleset_dir(_write(tmp_path, body, 'ruleset:\n  version: " v9 "\n  description: d\n'))
    assert ruleset.version == "v9" and ruleset.description == "d"
    r1, r2 = ruleset.rules
    assert r1 == Rule("r1", Match("govservice", "citizen_feedback", Grade.SENSITIVE), ("archive", "public_cloud"),
                      (View("v1", (("contact", Transform("mask")), ("district", Transform("pseudonymise", "default")),
                                   ("feedback_id", Transform("pseudonymise", "tickets")),
                                   ("submitted_at", Transform("generalise", "month")),
                                   ("text", Transform("drop")), ("topic", Transform("keep"))), ("public_cloud",)),),
                      "REV-1", "说明", str(tmp_path / "r.yaml"), 3)
    assert r1.derive[0].line == 12
    assert r1.where == f"{tmp_path / 'r.yaml'}:3"
    assert r2.match == Match("market", "*", None) and r2.to == () and r2.line == 21


def test_an_empty_rules_file_has_no_rules(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    assert load_rules_file(tmp_path / "empty.yaml") == []
    (tmp_path / "none.yaml").write_text("rules:\n")
    assert load_rules_file(tmp_path / "none.yaml") == []


def test_rule_files_are_read_in_name_order_and_ruleset_yaml_is_not_a_rules_file(tmp_path: Path) -> None:
    rules = _write(tmp_path, "rules:\n  - id: from-r\n    match: {dept: market}\n")
    (rules / "a.yaml").write_text("rules:\n  - id: from-a\n    match: {dept: transport}\n")
    (rules / "z.yml").write_text("rules:\n  - id: not-read\n    match: {dept: health}\n")
    assert [r.id for r in load_ruleset_dir(rules).rules] == ["from-a", "from-r"]


def test_the_shipped_rules_load() -> None:
    ruleset = load_ruleset_dir(RULES)
    assert ruleset.version == "2026.11.30-1"
    assert [r.id for r in ruleset.rules] == [
        "permit-applications-statistic", "citizen-feedback-open-data", "hospital-admissions-stay-private",
        "business-licences-open-data", "inspection-results-open-data", "inspection-complaints-pseudonymous",
        "inspection-results-naming-officers-stay-private", "population-statistics-stay-private",
        "bus-arrivals-open-data", "road-closures-stay-internal"]
    assert all(r.path.endswith(".yaml") and r.line > 0 for r in ruleset.rules)


# --- JSON round trip and digest ------------------------------------------------------------------------

def test_rule_set_round_trips_through_json_keeping_equality_and_digest() -> None:
    shipped = load_ruleset_dir(RULES)
    again = RuleSet.from_json(shipped.to_json())
    assert again == shipped
    assert again.digest == shipped.digest
    assert again.description == shipped.description
    assert [r.where for r in again.rules] == [r.where for r in shipped.rules]
    assert RuleSet.from_json(again.to_json()) == again


def test_round_trip_keeps_approval_description_grade_and_every_transform() -> None:
    view = View("v", (("a", Transform("keep")), ("b", Transform("generalise", "date")), ("c", Transform("pseudonymise", "ctx")),
                      ("d", Transform("mask")), ("e", Transform("drop"))), ("archive",))
    rule = Rule("x", Match("govservice", "permit_application", Grade.INTERNAL), ("public_cloud",), (view,), "APP-7", "desc", "f.yaml", 9)
    ruleset = RuleSet("v1", (rule,), "set")
    data = json.loads(ruleset.to_json())
    assert data["rules"][0]["approval"] == "APP-7" and data["rules"][0]["match"]["grade"] == "internal"
    again = RuleSet.from_json(ruleset.to_json())
    assert again == ruleset and again.digest == ruleset.digest
    assert again.rules[0].derive[0].fields == view.fields


def test_digest_ignores_where_a_rule_came_from_but_not_what_it_says() -> None:
    base = Rule("x", Match("market", "licence_granted", Grade.PUBLIC), ("public_cloud",))
    digest = RuleSet("v1", (base,)).digest
    assert len(digest) == 64
    moved = Rule("x", base.match, base.to, path="other.yaml", line=40)
    assert RuleSet("v1", (moved,)).digest == digest
    for changed in (
        RuleSet("v2", (base,)),
        RuleSet("v1", (Rule("x", base.match, ("public_cloud", "archive")),)),
        RuleSet("v1", (Rule("x", Match("market", "licence_granted", None), base.to),)),
        RuleSet("v1", (Rule("y", base.match, base.to),)),
        RuleSet("v1", (Rule("x", base.match, base.to, approval="A"),)),
        RuleSet("v1", (base, Rule("z", Match("transport"))) ),
        RuleSet("v1", ()),
    ):
        assert changed.digest != digest


def test_digest_changes_when_a_view_transform_changes() -> None:
    def ruleset(transform: Transform) -> RuleSet:
        return RuleSet("v", (Rule("r", Match("govservice"), derive=(View("v", (("text", transform),), ()),)),))
    assert ruleset(Transform("drop")).digest != ruleset(Transform("mask")).digest
    assert ruleset(Transform("pseudonymise", "a")).digest != ruleset(Transform("pseudonymise", "b")).digest


# --- matching ------------------------------------------------------------------------------------------

def test_match_by_department_event_and_grade_cap() -> None:
    any_market = Match("market")
    assert any_market.matches("market", "licence_granted", Grade.IMPORTANT)
    assert not any_market.matches("transport", "licence_granted", Grade.PUBLIC)
    capped = Match("*", "bus_arrival", Grade.INTERNAL)
    assert capped.matches("transport", "bus_arrival", Grade.PUBLIC)
    assert capped.matches("transport", "bus_arrival", Grade.INTERNAL)
    assert not capped.matches("transport", "bus_arrival", Grade.SENSITIVE)
    assert not capped.matches("transport", "road_closure", Grade.PUBLIC)


@pytest.mark.parametrize("wide, narrow, covers", [
    (Match(), Match("market", "x", Grade.PUBLIC), True),
    (Match("market"), Match("market", "x"), True),
    (Match("market", "x"), Match("market"), False),
    (Match("market", grade=Grade.SENSITIVE), Match("market", "x", Grade.INTERNAL), True),
    (Match("market", grade=Grade.INTERNAL), Match("market", "x", Grade.SENSITIVE), False),
    (Match("market", grade=Grade.INTERNAL), Match("market", "x"), False),
    (Match("transport"), Match("market"), False),
])
def test_covers_means_every_event_of_the_other_match(wide: Match, narrow: Match, covers: bool) -> None:
    assert wide.covers(narrow) is covers


def test_first_match_takes_rules_in_order_skipping_grade_caps_and_caches_candidates() -> None:
    capped = Rule("capped", Match("transport", "bus_arrival", Grade.PUBLIC))
    dept = Rule("dept", Match("transport"))
    other = Rule("other", Match("market"))
    ruleset = RuleSet("v", (other, capped, dept))
    assert ruleset.first_match("transport", "bus_arrival", Grade.PUBLIC) is capped
    assert ruleset.first_match("transport", "bus_arrival", Grade.INTERNAL) is dept
    assert ruleset.first_match("transport", "road_closure", Grade.PUBLIC) is dept
    assert ruleset.first_match("health", "x", Grade.PUBLIC) is None
    assert ruleset.candidates("transport", "bus_arrival") == (capped, dept)
    assert ruleset.candidates("transport", "bus_arrival") is ruleset.candidates("transport", "bus_arrival")
    assert RuleSet.empty().first_match("transport", "bus_arrival", Grade.PUBLIC) is None
    assert RuleSet.empty().version == "none" and RuleSet.empty().rules == ()


def test_view_transform_lookup_and_transform_json() -> None:
    view = View("v", (("a", Transform("keep")), ("b", Transform("generalise", "month"))), ())
    assert view.transform("b") == Transform("generalise", "month")
    assert view.transform("zzz") is None
    assert Transform("keep").to_json() == "keep"
    assert Transform("pseudonymise", "k").to_json() == {"pseudonymise": "k"}
    assert Rule("x", Match()).where == "x"
