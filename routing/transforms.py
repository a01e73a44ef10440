"""Field transforms for derived public views, and the grade each one leaves behind.

The grade of a transformed field is computed here, never declared: mask, generalise and pseudonymise bring
`internal` and `sensitive` data down to `public`; `restricted` and `important` data may only be dropped.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from routing.grades import Grade
from routing.rules import Transform

Pseudonymiser = Callable[[bytes], "bytes | str"]
CompiledTransform = Callable[[Any, "Pseudonymiser | None"], Any]  # apply(transform, value, p) for a non-None value

# Grades a lowering transform may take down to public (就高从严: nothing above sensitive).
LOWERABLE = (Grade.PUBLIC, Grade.INTERNAL, Grade.SENSITIVE)

# Only Chinese characters make a district name, so that an arbitrary text (an ID number, a message, a
# name followed by 区) is refused instead of being "generalised" into open data up to its first 区.
_CJK = "[\u4e00-\u9fff]"
_DISTRICT = re.compile(rf"^(?:{_CJK}{{1,12}}?(?:市|省|自治区))?(?P<district>{_CJK}{{1,15}}?(?:新区|区|县|市|旗))")
# The districts `generalise: district` may output. The pattern above only finds a candidate; the name must
# also be in this list, because a free text (a complaint naming people, "张三住在海淀区") also ends in 区 and
# would otherwise be published verbatim as a "district". Extend it with the districts of the city served.
KNOWN_DISTRICTS = frozenset({
    "黄浦区", "徐汇区", "长宁区", "静安区", "普陀区", "虹口区", "杨浦区", "闵行区", "宝山区", "嘉定区",
    "浦东新区", "金山区", "松江区", "青浦区", "奉贤区", "崇明区",
    "海淀区", "朝阳区", "东城区", "西城区", "昆山市", "崇明县", "阿拉善左旗",
})
# An age band is only a generalisation for ages: a large number (a count, a phone number) would keep all
# but its last digit.
MAX_AGE = 150

# Transforms that bring a lowerable grade down to public; any other kind keeps the source grade.
LOWERING = ("mask", "generalise", "pseudonymise")


class TransformError(ValueError):
    """A value that the transform cannot handle; the view is then not produced (fail closed)."""


def transformed_grade(source: Grade, transform: Transform) -> Grade | None:
    """The grade of the field after `transform`; None when dropped. Refused transforms keep the source grade."""
    if transform.kind == "drop":
        return None
    if transform.kind == "keep":
        return source
    if transform.kind in LOWERING and source in LOWERABLE:
        return Grade.PUBLIC
    return source


def transformed_type(avro_type: object, transform: Transform) -> object:
    """The Avro type of the field in the derived view."""
    if transform.kind == "keep":
        return avro_type
    nullable = avro_type == "null" or (isinstance(avro_type, list) and "null" in avro_type)
    return ["null", "string"] if nullable else "string"


def apply(transform: Transform, value: Any, pseudonymise: Pseudonymiser | None = None) -> Any:
    """The transformed value (None stays None); raises TransformError when it cannot be made safely."""
    if value is None or transform.kind == "keep":
        return value
    if transform.kind == "mask":
        return mask(str(value))
    if transform.kind == "generalise":
        return generalise(transform.arg or "", value)
    if transform.kind == "pseudonymise":
        if pseudonymise is None:
            raise TransformError("no pseudonymisation key available")
        result = pseudonymise(pseudonym_input(transform, value))
        return result.decode() if isinstance(result, bytes) else str(result)
    raise TransformError(f"transform {transform.kind!r} produces no value")


def compile_transform(transform: Transform) -> CompiledTransform:
    """`apply(transform, value, pseudonymise)` for a value that is not None, with what depends only on the
    transform decided once (compiled plans call it per event; `apply` stays the reference)."""
    kind, arg = transform.kind, transform.arg or ""
    if kind == "keep":
        return lambda value, _pseudonymise: value
    if kind == "mask":
        return lambda value, _pseudonymise: mask(str(value))
    if kind == "generalise" and arg in ("month", "date"):
        return _time_generaliser("%Y-%m" if arg == "month" else "%Y-%m-%d")
    return lambda value, pseudonymise: apply(transform, value, pseudonymise)


_DAY_MS = 86_400_000
_DAYS_REMEMBERED = 4096
_REMEMBERED_UNTIL_MS = 2**42  # about the year 2109: far inside the range of datetime and of exact float division


def _time_generaliser(fmt: str) -> CompiledTransform:
    """`generalise` to a month or a date, remembering the answer per day of epoch milliseconds: the events of a
    stream fall on a few days, and formatting a date costs more than the rest of a view."""
    by_day: dict[int, str] = {}

    def generalise_time(value: Any, _pseudonymise: Pseudonymiser | None = None) -> str:
        if type(value) is not int or not 0 <= value < _REMEMBERED_UNTIL_MS:
            return _as_datetime(value).strftime(fmt)
        day = value // _DAY_MS  # a UTC day: the month and the date are those of every millisecond in it
        found = by_day.get(day)
        if found is None:
            if len(by_day) >= _DAYS_REMEMBERED:
                by_day.clear()
            found = by_day[day] = _as_datetime(value).strftime(fmt)
        return found
    return generalise_time


def pseudonym_input(transform: Transform, value: Any) -> bytes:
    """What the keyed pseudonym of `value` is computed over: the transform's context, so that equal values under
    two contexts (a phone as complainant, as applicant) get unrelated pseudonyms, then the value."""
    return (transform.arg or "default").encode() + b":" + str(value).encode("utf-8")


def pseudonyms_from(prepared: Mapping[bytes, str]) -> Pseudonymiser:
    """A pseudonymiser that only looks up pseudonyms computed beforehand (the router's, once per batch by Vault).

    A value nobody prepared fails its view (TransformError): the view is then not produced, never produced with
    the plain value or without its pseudonym.
    """
    def lookup(data: bytes) -> str:
        try:
            return prepared[data]
        except KeyError:
            raise TransformError("no pseudonym was prepared for this value") from None
    return lookup


def mask(text: str) -> str:
    """Keep the last four characters, star the rest; short values are starred entirely."""
    if len(text) < 8:
        return "*" * len(text)
    return "*" * (len(text) - 4) + text[-4:]


def generalise(kind: str, value: Any) -> str:
    if kind in ("month", "date"):
        moment = _as_datetime(value)
        return moment.strftime("%Y-%m" if kind == "month" else "%Y-%m-%d")
    if kind == "district":
        match = _DISTRICT.match(str(value).strip())
        if not match or match["district"] not in KNOWN_DISTRICTS:
            raise TransformError("address has no recognisable district")
        return match["district"]
    if kind == "age_band":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AGE:
            raise TransformError(f"age must be an integer from 0 to {MAX_AGE}")
        low = (value // 10) * 10
        return f"{low}-{low + 9}"
    raise TransformError(f"unknown generalisation {kind!r}")


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, bool):
        raise TransformError("a boolean is not a time")
    if isinstance(value, int):
        try:
            return datetime.fromtimestamp(value / 1000, tz=timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise TransformError("time out of range") from None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise TransformError("not an ISO 8601 date") from None
    raise TransformError("not a time")
