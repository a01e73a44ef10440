"""The routing rules model and its YAML loader: rules match department, event type and grade, and send to
destinations or derive public views. Every load error names file, line and reason.

Semantics: rules are tried in order (files sorted by name, rules in file order); the first rule that matches
an event decides. Every event also always goes to its graded private topic, whatever the rules say.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from routing.exceptions import GradeError, RuleError
from routing.grades import Grade
from routing.sources import SourceFile

PUBLIC_CLOUD = "public_cloud"
ARCHIVE = "archive"
DESTINATIONS = (PUBLIC_CLOUD, ARCHIVE)
TRANSFORMS = ("keep", "drop", "mask", "generalise", "pseudonymise")
GENERALISE_KINDS = ("month", "date", "district", "age_band")
RULESET_FILE = "ruleset.yaml"


@dataclass(frozen=True)
class Transform:
    """What a derived view does with one source field."""

    kind: str  # keep | drop | mask | generalise | pseudonymise
    arg: str | None = None  # generalise: month/date/district/age_band; pseudonymise: a key context

    def to_json(self) -> Any:
        return self.kind if self.arg is None else {self.kind: self.arg}


@dataclass(frozen=True)
class View:
    """A derived public view: a new record shaped from the source by one transform per field."""

    name: str
    fields: tuple[tuple[str, Transform], ...]  # sorted by field name, so equal views compare equal
    to: tuple[str, ...]
    line: int = field(default=0, compare=False)

    def transform(self, field_name: str) -> Transform | None:
        for name, transform in self.fields:
            if name == field_name:
                return transform
        return None


@dataclass(frozen=True)
class Match:
    dept: str = "*"
    event: str = "*"
    grade: Grade | None = None  # the rule matches events of at most this grade

    def matches(self, dept: str, event: str, grade: Grade) -> bool:
        return (self.dept in ("*", dept)) and (self.event in ("*", event)) and (self.grade is None or grade <= self.grade)

    def covers(self, other: Match) -> bool:
        """True when every event `other` matches is matched by this one too."""
        return (self.dept in ("*", other.dept) and self.event in ("*", other.event)
                and (self.grade is None or (other.grade is not None and other.grade <= self.grade)))


@dataclass(frozen=True)
class Rule:
    id: str
    match: Match
    to: tuple[str, ...] = ()
    derive: tuple[View, ...] = ()
    approval: str | None = None  # reference of an explicit, reviewed approval
    description: str = ""
    path: str = ""
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.path else self.id


@dataclass(frozen=True)
class RuleSet:
    version: str
    rules: tuple[Rule, ...] = ()
    description: str = ""
    _index: dict[tuple[str, str], tuple[Rule, ...]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def empty(cls) -> RuleSet:
        """No rules: every event goes to its graded private topic and nowhere else (fail closed)."""
        return cls("none")

    def candidates(self, dept: str, event: str) -> tuple[Rule, ...]:
        """Rules that can match (dept, event), in order; cached, since this runs per event."""
        key = (dept, event)
        found = self._index.get(key)
        if found is None:
            found = tuple(r for r in self.rules if r.match.dept in ("*", dept) and r.match.event in ("*", event))
            self._index[key] = found
        return found

    def first_match(self, dept: str, event: str, grade: Grade) -> Rule | None:
        for rule in self.candidates(dept, event):
            if rule.match.grade is None or grade <= rule.match.grade:
                return rule
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "description": self.description, "rules": [_rule_dict(r) for r in self.rules]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @property
    def digest(self) -> str:
        """sha256 of the canonical content: two routers with the same digest run the same rules."""
        body = {"version": self.version, "rules": [_rule_dict(r, with_source=False) for r in self.rules]}
        return hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> RuleSet:
        data = json.loads(text)
        rules = tuple(_rule_from(r, r.get("path", "<json>"), int(r.get("line", 0))) for r in data.get("rules", []))
        return cls(str(data["version"]), rules, str(data.get("description", "")))


def _rule_dict(rule: Rule, with_source: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": rule.id,
        "match": {"dept": rule.match.dept, "event": rule.match.event,
                  **({"grade": rule.match.grade.id} if rule.match.grade is not None else {})},
        "to": list(rule.to),
        "derive": [{"name": v.name, "fields": {n: t.to_json() for n, t in v.fields}, "to": list(v.to)} for v in rule.derive],
    }
    if rule.approval:
        data["approval"] = rule.approval
    if rule.description:
        data["description"] = rule.description
    if with_source:
        data["path"], data["line"] = rule.path, rule.line
    return data


# --- loading ------------------------------------------------------------------------------------------

_RULE_KEYS = {"id", "match", "to", "derive", "approval", "description"}
_MATCH_KEYS = {"dept", "event", "grade"}
_VIEW_KEYS = {"name", "fields", "to"}
_VIEW_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def ruleset_from_sources(head: SourceFile, rule_files: Sequence[SourceFile], where: str = "") -> RuleSet:
    """The rule set of a directory: `ruleset.yaml` (`head`, the version) and every other `*.yaml` (rules), by name.

    The adapters read the files; `where` names the directory in errors.
    """
    if head.data is None:
        raise RuleError(f"missing {RULESET_FILE} (it names the rule-set version)", where)
    meta = _load_yaml(head)
    if not isinstance(meta, Mapping) or not isinstance(meta.get("ruleset"), Mapping):
        raise RuleError("expected a top-level `ruleset:` mapping with a `version`", head.path, 1)
    version = meta["ruleset"].get("version")
    if not isinstance(version, str) or not version.strip():
        raise RuleError("ruleset.version must be a non-empty string (quote it)", head.path,
                        _key_line(meta["ruleset"], "version", _line(meta["ruleset"])))
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for source in sorted(rule_files, key=lambda s: s.path):
        for rule in rules_from_source(source):
            if rule.id in seen:
                raise RuleError(f"rule id {rule.id!r} is already used at {seen[rule.id]}", rule.path, rule.line)
            seen[rule.id] = rule.where
            rules.append(rule)
    return RuleSet(version.strip(), tuple(rules), str(meta["ruleset"].get("description", "")))


def rules_from_source(source: SourceFile) -> list[Rule]:
    """The rules of one rules file (`rules:` list); RuleError names file and line of the first problem."""
    data = _load_yaml(source)
    where = source.path
    if data is None:
        return []
    if not isinstance(data, Mapping) or set(data) - {"rules"}:
        extra = _unknown_keys(data, {"rules"}) if isinstance(data, Mapping) else []
        raise RuleError(f"expected only a top-level `rules:` list{'; unknown: ' + _names(extra) if extra else ''}", where,
                        _key_line(data, extra[0], 1) if extra else 1)
    items = data.get("rules") or []
    if not isinstance(items, list):
        raise RuleError("`rules` must be a list", where, _line(data))
    return [_rule_from(item, where, _item_line(items, i)) for i, item in enumerate(items)]


def _load_yaml(source: SourceFile) -> Any:
    if source.data is None:
        raise RuleError("file not found", source.path)
    try:
        return YAML().load(source.data.decode("utf-8"))
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise RuleError(f"YAML syntax error: {exc.problem}", source.path, line) from None
    except UnicodeDecodeError:
        raise RuleError("file is not UTF-8 text", source.path) from None
    except YAMLError as exc:  # unmarked: e.g. a control character the YAML reader refuses
        raise RuleError(f"not YAML: {str(exc).splitlines()[0]}", source.path) from None
    except RecursionError:
        raise RuleError("YAML nested too deeply", source.path) from None
    except TypeError:  # ruamel cannot hash a mapping or a list used as a key
        raise RuleError("YAML with a mapping or a list as a key", source.path) from None


def _rule_from(item: Any, where: str, line: int) -> Rule:
    if not isinstance(item, Mapping):
        raise RuleError("each rule must be a mapping with at least `id` and `match`", where, line)
    unknown = _unknown_keys(item, _RULE_KEYS | {"path", "line"})
    if unknown:
        raise RuleError(f"unknown key(s) {_names(unknown)} (allowed: {_names(_RULE_KEYS)})", where,
                        _key_line(item, unknown[0], line))
    rule_id = item.get("id")
    if not isinstance(rule_id, str) or not rule_id.strip():
        raise RuleError("rule has no `id`", where, line)
    raw_match = item.get("match")
    if not isinstance(raw_match, Mapping):
        raise RuleError(f"rule {rule_id!r}: `match` must be a mapping of dept, event, grade", where, line)
    match_line = _key_line(item, "match", line)
    bad = _unknown_keys(raw_match, _MATCH_KEYS)
    if bad:
        raise RuleError(f"rule {rule_id!r}: unknown match key(s) {_names(bad)}", where,
                        _key_line(raw_match, bad[0], match_line))
    grade = None
    if raw_match.get("grade") is not None:
        try:
            grade = Grade.parse(raw_match["grade"])
        except GradeError as exc:
            raise RuleError(f"rule {rule_id!r}: {exc}", where, _key_line(raw_match, "grade", match_line)) from None
    match = Match(str(raw_match.get("dept", "*")), str(raw_match.get("event", "*")), grade)
    to = _destinations(item.get("to", []), f"rule {rule_id!r}", where, _key_line(item, "to", line))
    raw_views = item.get("derive") or []
    if not isinstance(raw_views, list):
        raise RuleError(f"rule {rule_id!r}: `derive` must be a list of views", where, _key_line(item, "derive", line))
    views = tuple(_view_from(v, rule_id, where, _item_line(raw_views, i) or line) for i, v in enumerate(raw_views))
    approval = item.get("approval")
    return Rule(rule_id.strip(), match, to, views, str(approval) if approval else None,
                str(item.get("description", "")), where, line)


def _view_from(item: Any, rule_id: str, where: str, line: int) -> View:
    if not isinstance(item, Mapping) or not item.get("name"):
        raise RuleError(f"rule {rule_id!r}: a derived view needs a `name`", where, line)
    bad = _unknown_keys(item, _VIEW_KEYS)
    if bad:
        raise RuleError(f"rule {rule_id!r}: unknown view key(s) {_names(bad)}", where, line)
    name = str(item["name"])
    if not _VIEW_NAME.match(name):
        # The name becomes a topic (public.<dept>.<name>) and an Avro record name: keep it to one plain word.
        raise RuleError(f"rule {rule_id!r}: view name {name!r} must be lower-case letters, digits and _", where, line)
    raw_fields = item.get("fields")
    if not isinstance(raw_fields, Mapping) or not raw_fields:
        raise RuleError(f"view {name!r}: `fields` must name every source field with a transform", where, line)
    fields = tuple(sorted((str(n), _transform_from(t, name, str(n), where, _key_line(raw_fields, n, line)))
                          for n, t in raw_fields.items()))
    to = _destinations(item.get("to", []), f"view {name!r}", where, _key_line(item, "to", line))
    return View(name, fields, to, line)


def _transform_from(raw: Any, view: str, field_name: str, where: str, line: int) -> Transform:
    if isinstance(raw, str) and raw in ("keep", "drop", "mask"):
        return Transform(raw)
    if raw == "encrypt" or (isinstance(raw, Mapping) and len(raw) == 1 and "encrypt" in raw):
        raise RuleError(f"view {view!r} field {field_name!r}: encryption never lowers a grade; drop the field instead", where, line)
    if isinstance(raw, str) and raw == "pseudonymise":
        return Transform("pseudonymise", "default")
    if isinstance(raw, Mapping) and len(raw) == 1:
        kind, arg = next(iter(raw.items()))
        if kind == "generalise" and arg in GENERALISE_KINDS:
            return Transform("generalise", str(arg))
        if kind == "generalise":
            raise RuleError(f"view {view!r} field {field_name!r}: generalise to one of {', '.join(GENERALISE_KINDS)}", where, line)
        if kind == "pseudonymise":
            return Transform("pseudonymise", str(arg))
    raise RuleError(f"view {view!r} field {field_name!r}: unknown transform {raw!r} (keep, drop, mask, "
                    "generalise: <kind>, pseudonymise)", where, line)


def _destinations(raw: Any, owner: str, where: str, line: int) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RuleError(f"{owner}: `to` must be a list of destinations ({', '.join(DESTINATIONS)})", where, line)
    for dest in raw:
        if dest not in DESTINATIONS:
            raise RuleError(f"{owner}: unknown destination {dest!r} (allowed: {', '.join(DESTINATIONS)}; the graded "
                            "private topic is always written)", where, line)
    return tuple(dict.fromkeys(raw))


def _unknown_keys(mapping: Mapping[Any, Any], allowed: set[str]) -> list[Any]:
    """Keys not in `allowed`, in a stable order; YAML keys need not be strings (`- : x` has a null key)."""
    return sorted((key for key in mapping if key not in allowed), key=str)


def _names(keys: Any) -> str:
    return ", ".join(sorted(str(key) for key in keys))


def _line(node: Any, default: int = 0) -> int:
    lc = getattr(node, "lc", None)
    return lc.line + 1 if lc is not None else default


def _item_line(seq: Any, index: int) -> int:
    if isinstance(seq, CommentedSeq):
        try:
            return seq.lc.item(index)[0] + 1
        except (KeyError, IndexError, TypeError):
            return 0
    return 0


def _key_line(mapping: Any, key: Any, default: int) -> int:
    if isinstance(mapping, CommentedMap):
        try:
            return mapping.lc.key(key)[0] + 1
        except (KeyError, TypeError):
            return default
    return default
