"""Field transforms of derived views: the values they make, the values they refuse, the grade they leave."""
from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from routing.grades import Grade
from routing.rules import Transform
from routing.transforms import (
    LOWERABLE,
    TransformError,
    apply,
    compile_transform,
    generalise,
    mask,
    transformed_grade,
    transformed_type,
)

# 2026-11-25T00:43:00Z
MILLIS = 1795567380000


@pytest.mark.parametrize("text, masked", [
    ("", ""), ("李", "*"), ("李华", "**"), ("1234567", "*******"),  # shorter than 8: all starred
    ("12345678", "****5678"), ("13812345678", "*******5678"), ("310101199001011234", "**************1234"),
])
def test_mask_stars_short_values_entirely_and_keeps_the_last_four_of_long_ones(text: str, masked: str) -> None:
    assert mask(text) == masked
    assert len(mask(text)) == len(text)


def test_mask_through_apply_masks_the_text_of_any_value() -> None:
    assert apply(Transform("mask"), 13812345678) == "*******5678"
    assert apply(Transform("mask"), "abc") == "***"


@pytest.mark.parametrize("kind, value, expected", [
    ("month", MILLIS, "2026-11"), ("date", MILLIS, "2026-11-25"),
    ("month", 0, "1970-01"), ("date", -86_400_000, "1969-12-31"),
    ("month", "2026-11-20", "2026-11"), ("date", "2026-11-20T08:00:00Z", "2026-11-20"),
    ("date", "2026-11-20T23:30:00+08:00", "2026-11-20"), ("month", "2026-02-03T04:05:06", "2026-02"),
])
def test_generalise_times_from_epoch_millis_and_iso_strings(kind: str, value: object, expected: str) -> None:
    assert generalise(kind, value) == expected
    assert apply(Transform("generalise", kind), value) == expected


@pytest.mark.parametrize("value, reason", [
    (10**20, "out of range"), (-(10**20), "out of range"), ("yesterday", "not an ISO 8601"), ("", "not an ISO 8601"),
    (True, "boolean"), (1.5, "not a time"), (None.__class__, "not a time"), ([MILLIS], "not a time"),
])
def test_times_that_are_not_times_raise(value: object, reason: str) -> None:
    for kind in ("month", "date"):
        with pytest.raises(TransformError, match=reason):
            generalise(kind, value)


@pytest.mark.parametrize("address, district", [
    ("上海市浦东新区张江路1号", "浦东新区"), ("北京市朝阳区建国路88号", "朝阳区"), ("浦东新区", "浦东新区"),
    ("闵行区", "闵行区"), ("  静安区南京西路 ", "静安区"), ("江苏省昆山市玉山镇", "昆山市"), ("崇明县", "崇明县"),
    ("内蒙古自治区阿拉善左旗巴彦浩特镇", "阿拉善左旗"),
])
def test_generalise_district_keeps_only_the_district_of_an_address(address: str, district: str) -> None:
    assert generalise("district", address) == district


@pytest.mark.parametrize("text", [
    "???", "", "Main Street 1", "张江路1号",
    # Not addresses: before the fix, everything up to the first 区 "generalised" into open data.
    "ID 310101199001011234 lives in 浦东新区", "<secret>MARKER区", "王小明,13812345678,静安区",
])
def test_generalise_district_refuses_what_is_not_an_address(text: str) -> None:
    with pytest.raises(TransformError, match="no recognisable district"):
        generalise("district", text)


@pytest.mark.parametrize("age, band", [(0, "0-9"), (9, "0-9"), (10, "10-19"), (37, "30-39"), (99, "90-99"), (150, "150-159")])
def test_age_band_groups_ages_by_ten_years(age: int, band: str) -> None:
    assert generalise("age_band", age) == band


@pytest.mark.parametrize("value", [-1, 151, 13812345678, True, "37", 37.0, None.__class__])
def test_age_band_refuses_what_is_not_an_age(value: object) -> None:
    with pytest.raises(TransformError, match="age must be an integer"):
        generalise("age_band", value)


def test_unknown_generalisation_and_non_value_transforms_raise() -> None:
    with pytest.raises(TransformError, match="unknown generalisation 'week'"):
        generalise("week", MILLIS)
    with pytest.raises(TransformError, match="unknown generalisation ''"):
        apply(Transform("generalise"), MILLIS)
    with pytest.raises(TransformError, match="'drop' produces no value"):
        apply(Transform("drop"), "x")
    with pytest.raises(TransformError, match="'encrypt' produces no value"):
        apply(Transform("encrypt"), "x")


def test_keep_returns_the_value_itself_and_none_stays_none() -> None:
    value = {"nested": [1]}
    assert apply(Transform("keep"), value) is value
    for transform in (Transform("mask"), Transform("generalise", "month"), Transform("pseudonymise", "k"), Transform("drop")):
        assert apply(transform, None) is None


def test_pseudonymise_is_a_keyed_hash_of_context_and_value() -> None:
    key = b"k1"
    seen: list[bytes] = []

    def hmac_hex(data: bytes) -> str:
        seen.append(data)
        return hmac.new(key, data, hashlib.sha256).hexdigest()

    out = apply(Transform("pseudonymise", "citizens"), "王小明", hmac_hex)
    assert seen == ["citizens:王小明".encode()]
    assert out == hmac.new(key, "citizens:王小明".encode(), hashlib.sha256).hexdigest()
    assert "王小明" not in out
    # Same value, other context: another pseudonym; the default context is "default".
    assert apply(Transform("pseudonymise", "other"), "王小明", hmac_hex) != out
    apply(Transform("pseudonymise"), 42, hmac_hex)
    assert seen[-1] == b"default:42"
    # A pseudonymiser returning bytes gives text.
    assert apply(Transform("pseudonymise", "c"), "v", lambda data: b"vault:" + data[:1]) == "vault:c"


def test_pseudonymise_without_a_key_raises_rather_than_passing_the_value() -> None:
    with pytest.raises(TransformError, match="no pseudonymisation key available") as refused:
        apply(Transform("pseudonymise", "k"), "310101199001011234", None)
    assert "310101199001011234" not in str(refused.value)


@pytest.mark.parametrize("grade", list(Grade))
@pytest.mark.parametrize("transform", [Transform("mask"), Transform("generalise", "month"), Transform("generalise", "district"),
                                       Transform("generalise", "age_band"), Transform("pseudonymise", "k"),
                                       Transform("pseudonymise", "default")])
def test_lowering_transforms_bring_only_lowerable_grades_to_public(grade: Grade, transform: Transform) -> None:
    expected = Grade.PUBLIC if grade <= Grade.SENSITIVE else grade
    assert transformed_grade(grade, transform) is expected
    if grade in (Grade.RESTRICTED, Grade.IMPORTANT):
        assert transformed_grade(grade, transform) is grade  # restricted and important are never lowered


@pytest.mark.parametrize("grade", list(Grade))
def test_keep_drop_and_unknown_transforms_never_lower(grade: Grade) -> None:
    assert transformed_grade(grade, Transform("keep")) is grade
    assert transformed_grade(grade, Transform("drop")) is None
    # A transform the loader would refuse (encryption, a typo) built by hand keeps the source grade.
    assert transformed_grade(grade, Transform("encrypt")) is grade
    assert transformed_grade(grade, Transform("maskk")) is grade


def test_lowerable_is_public_internal_and_sensitive() -> None:
    assert LOWERABLE == (Grade.PUBLIC, Grade.INTERNAL, Grade.SENSITIVE)


@pytest.mark.parametrize("avro_type, transform, expected", [
    ("long", Transform("keep"), "long"), (["null", "long"], Transform("keep"), ["null", "long"]),
    ("long", Transform("generalise", "month"), "string"), (["null", "string"], Transform("mask"), ["null", "string"]),
    ("null", Transform("pseudonymise", "k"), ["null", "string"]), ("int", Transform("generalise", "age_band"), "string"),
])
def test_transformed_type_is_text_for_every_transform_but_keep(avro_type: object, transform: Transform, expected: object) -> None:
    assert transformed_type(avro_type, transform) == expected


_COMPILED_VALUES: list[Any] = [
    None, True, False, 0, -1, 7, 155, 1.5, "", "x", "2026-11-20", "2026-11-20T10:00:00Z", "上海市静安区南京西路 1 号",
    "张三住在海淀区", "13800138000", 2**42 - 1, 2**42, -(2**45), 10**20, 1_795_600_000_000,
    *(86_400_000 * day + ms for day in range(0, 60_000, 997) for ms in (-1, 0, 1, 43_200_000)),
]


@pytest.mark.parametrize("transform", [
    Transform("keep"), Transform("mask"), Transform("generalise", "month"), Transform("generalise", "date"),
    Transform("generalise", "district"), Transform("generalise", "age_band"), Transform("generalise", "decade"),
    Transform("pseudonymise", "complainant"), Transform("drop"),
], ids=lambda t: f"{t.kind}-{t.arg}")
def test_a_compiled_transform_gives_what_apply_gives(transform: Transform) -> None:
    compiled = compile_transform(transform)

    def pseudonymise(data: bytes) -> bytes:
        return b"p:" + hashlib.sha256(data).hexdigest().encode()

    for _ in range(2):  # the second round answers from what the first remembered
        for value in _COMPILED_VALUES:
            if value is None:
                continue  # the plan never asks for a None value: it stays None
            for pseudonymiser in (pseudonymise, None):
                assert _outcome(lambda: compiled(value, pseudonymiser)) == \
                       _outcome(lambda: apply(transform, value, pseudonymiser)), value


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except TransformError as exc:
        return "refused", str(exc)
