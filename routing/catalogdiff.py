"""What a catalog change does to the catalog in force, and why `hbus catalog apply` refuses one: it may add
departments, event types, versions and raise grades; it may never lower or drop a grade, drop or rename a
department, remove or rewrite a version in force, or give two schemas one fingerprint.

Pure: both catalogs come checked one by one (`Catalog.check`), and the fingerprint function is handed in (the
codec's CRC-64-AVRO), so that this module decides and computes nothing it does not own.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routing.catalog import Catalog, Department, EventType
from routing.exceptions import SchemaError
from routing.grades import HIGHEST, Grade
from routing.rules import RuleSet
from routing.validator import validate

Fingerprint = Callable[[Mapping[str, Any]], bytes]
RECORD = ""  # the `field` of a RaisedGrade that is the record's own grade


@dataclass(frozen=True)
class RaisedGrade:
    """A grade that is higher in the change than in the versions before it (or in the version in force)."""

    key: str
    version: int
    field: str  # RECORD for the record's grade
    before: Grade
    after: Grade
    path: str

    def __str__(self) -> str:
        what = "the record" if self.field == RECORD else f"field {self.field!r}"
        return f"{self.key} v{self.version}: {what} {self.before.id} -> {self.after.id}"


@dataclass(frozen=True)
class CatalogChange:
    """What the change adds to the catalog in force (it never removes anything: removals are refused)."""

    new_departments: tuple[str, ...] = ()
    new_types: tuple[str, ...] = ()  # `dept.event` keys not in force
    new_versions: tuple[tuple[str, int], ...] = ()  # every (key, version) not in force, new types' included
    raised: tuple[RaisedGrade, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.new_departments or self.new_versions or self.raised)


def catalog_change(old: Catalog, new: Catalog) -> CatalogChange:
    in_force = {(t.key, t.version) for t in old}
    return CatalogChange(
        tuple(sorted(set(new.departments) - set(old.departments))),
        tuple(sorted({t.key for t in new} - {t.key for t in old})),
        tuple(sorted((t.key, t.version) for t in new if (t.key, t.version) not in in_force)),
        tuple(_raised(old, new)),
    )


def change_errors(old: Catalog, new: Catalog, fingerprint: Fingerprint, where: str = "",
                  departments_path: str = "departments.yaml", views: Sequence[EventType] = ()) -> list[SchemaError]:
    """Every reason the change from `old` (in force) to `new` is refused, each naming its file.

    `where` is the folder of the change's `.avsc` files, for versions that are missing from it; `views` are the
    derived views of the rules in force, whose fingerprints a new version may not take either.
    """
    return [*_department_errors(old.departments, new.departments, departments_path),
            *_removed_or_rewritten(old, new, fingerprint, where),
            *_grade_errors(old, new),
            *_collisions(old, new, fingerprint, views)]


def check_change(old: Catalog, new: Catalog, ruleset: RuleSet, fingerprint: Fingerprint, where: str = "",
                 departments_path: str = "departments.yaml",
                 views: Sequence[EventType] = ()) -> tuple[CatalogChange, list[SchemaError]]:
    """The change and every reason to refuse it, the rules in force validated against the new catalog included.

    The rules are proved again on every change (cheap, and a new type may meet a wildcard rule); a grade that
    rises is the case where they can stop holding: a rule that exported the type would now export that field.
    """
    change = catalog_change(old, new)
    errors = change_errors(old, new, fingerprint, where, departments_path, views)
    report = validate(ruleset, new)
    if not report.ok:
        raised = f" (grades raised: {'; '.join(map(str, change.raised))})" if change.raised else ""
        path = change.raised[0].path if change.raised else None
        errors.extend(SchemaError(f"the rules in force ({ruleset.version}) no longer validate against this catalog"
                                  f"{raised}: {finding}", path) for finding in report.errors)
    return change, errors


def _department_errors(old: Mapping[str, Department], new: Mapping[str, Department], path: str) -> list[SchemaError]:
    errors = []
    added = [d for d in new.values() if d.id not in old]
    for dept in sorted(old.values(), key=lambda d: d.id):
        now = new.get(dept.id)
        if now is None:
            same = [d.id for d in added if d.name_zh == dept.name_zh or d.name_en == dept.name_en]
            what = f"is renamed to {same[0]!r}" if same else "is dropped"
            errors.append(SchemaError(
                f"department {dept.id!r} {what}: a department's id names its topics, logins and keys, and records "
                "under it stay; a department may not be renamed or dropped", path))
        elif now.clearance != dept.clearance:
            errors.append(SchemaError(
                f"department {dept.id!r}: clearance {dept.clearance.id} -> {now.clearance.id} changes what its systems "
                "may read; that is an access review, not a catalog change", path))
    return errors


def _removed_or_rewritten(old: Catalog, new: Catalog, fingerprint: Fingerprint, where: str) -> list[SchemaError]:
    errors = []
    for before in old:
        path = f"{where}/{before.dept}/{before.event}.v{before.version}.avsc" if where else \
            f"{before.dept}/{before.event}.v{before.version}.avsc"
        if before.key not in new or before.version not in {t.version for t in new.versions(before.key)}:
            errors.append(SchemaError(
                f"{before.key} v{before.version} is in force and missing here: a version is never removed "
                "(records on the topics name it)", path))
            continue
        after = new.get(before.key, before.version)
        if fingerprint(before.schema) != fingerprint(after.schema):
            errors.append(SchemaError(
                f"{before.key} v{before.version} is in force and its fields or names change here: records already "
                f"written name its fingerprint; add v{max(t.version for t in new.versions(before.key)) + 1} instead",
                after.path))
        for spec in after.fields:
            if spec.name in before.field_grades and spec.encrypted != before.field(spec.name).encrypted:
                errors.append(SchemaError(
                    f"{before.key} v{before.version} is in force and field {spec.name!r} changes its encryption at "
                    "the source here: records already written were sealed as it was; add a new version instead",
                    after.path))
    return errors


def _grade_errors(old: Catalog, new: Catalog) -> list[SchemaError]:
    """A grade lower than, or missing where, the versions before (or the same version in force) had one."""
    errors = []
    for after, earlier in _compared(old, new):
        record_before = max(t.record_grade for t in earlier)
        if after.record_grade < record_before:
            errors.append(SchemaError(
                f"the record is {after.record_grade.id} in v{after.version}, lower than {record_before.id} before: "
                "a new version may not lower a grade", after.path))
        for spec in after.fields:
            graded = [t.field(spec.name) for t in earlier if spec.name in t.field_grades]
            tagged = [s for s in graded if s.tagged]
            if not tagged:
                continue
            before = max(s.grade for s in tagged)
            if not spec.tagged:
                errors.append(SchemaError(
                    f"field {spec.name!r} has no grade in v{after.version} but was {before.id} before: a grade may "
                    f"not be dropped (an ungraded field is carried as {HIGHEST.id}; say so with a grade)", after.path))
            elif spec.grade < before:
                errors.append(SchemaError(
                    f"field {spec.name!r} is {spec.grade.id} in v{after.version}, lower than {before.id} before: a "
                    "new version may not lower a field's grade (records already out were graded by it)", after.path))
    return errors


def _raised(old: Catalog, new: Catalog) -> list[RaisedGrade]:
    raised = []
    for after, earlier in _compared(old, new):
        record_before = max(t.record_grade for t in earlier)
        if after.record_grade > record_before:
            raised.append(RaisedGrade(after.key, after.version, RECORD, record_before, after.record_grade, after.path))
        for spec in after.fields:
            tagged = [t.field(spec.name) for t in earlier if spec.name in t.field_grades and t.field(spec.name).tagged]
            if spec.tagged and tagged and spec.grade > max(s.grade for s in tagged):
                raised.append(RaisedGrade(after.key, after.version, spec.name, max(s.grade for s in tagged),
                                          spec.grade, after.path))
    return raised


def _compared(old: Catalog, new: Catalog) -> list[tuple[EventType, list[EventType]]]:
    """Each version of `new` that is not in force as it is, with what its grades are held against: the versions
    before it, and the same version in force when it is rewritten."""
    pairs = []
    for after in new:
        in_force = _version(old, after.key, after.version)
        if in_force is not None and _same_grades(in_force, after):
            continue
        earlier = [t for t in new.versions(after.key) if t.version < after.version]
        if in_force is not None:
            earlier.append(in_force)
        if earlier:
            pairs.append((after, earlier))
    return pairs


def _version(catalog: Catalog, key: str, version: int) -> EventType | None:
    return next((t for t in catalog.versions(key) if t.version == version), None)


def _same_grades(a: EventType, b: EventType) -> bool:
    return a.record_grade == b.record_grade and \
        [(f.name, f.grade, f.tagged) for f in a.fields] == [(f.name, f.grade, f.tagged) for f in b.fields]


def _collisions(old: Catalog, new: Catalog, fingerprint: Fingerprint,
                views: Sequence[EventType] = ()) -> list[SchemaError]:
    """Two schemas with one fingerprint: a record names its schema by it alone, so it could not say which it is.
    Reported on each version the change brings (versions in force together already, and the rules' derived views
    among themselves, are not its doing)."""
    settled = {(t.key, t.version) for t in old}
    by_fingerprint: dict[bytes, list[tuple[EventType, bool]]] = {}
    for event_type in new:
        by_fingerprint.setdefault(fingerprint(event_type.schema), []).append(
            (event_type, (event_type.key, event_type.version) in settled))
    for view in views:
        found = by_fingerprint.get(fingerprint(view.schema))
        if found is not None:  # views only matter where they meet a catalog type
            found.append((view, True))
    errors = []
    for fp, types in by_fingerprint.items():
        for event_type, in_force in types:
            others = [t for t, _ in types if t is not event_type]
            if not others or in_force:
                continue
            errors.append(SchemaError(
                f"{event_type.key} v{event_type.version} has the fingerprint {fp.hex()} of "
                f"{', '.join(f'{t.key} v{t.version}' for t in others)}: a record names its schema by it alone; "
                "give the record another name, namespace or fields", event_type.path))
    return errors
