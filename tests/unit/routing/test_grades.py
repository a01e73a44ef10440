"""The grade lattice: order, names, refusals, fail-closed parsing and the high-water mark."""
from __future__ import annotations

import pytest

from routing.exceptions import GradeError
from routing.grades import HIGHEST, Grade, highest

ORDER = [Grade.PUBLIC, Grade.INTERNAL, Grade.SENSITIVE, Grade.RESTRICTED, Grade.IMPORTANT]


def test_grades_are_totally_ordered_from_public_to_important() -> None:
    assert sorted(Grade) == ORDER
    for lower, higher in zip(ORDER, ORDER[1:]):
        assert lower < higher and not higher < lower
    assert HIGHEST is Grade.IMPORTANT and max(Grade) is HIGHEST


@pytest.mark.parametrize("name, grade, zh", [
    ("public", Grade.PUBLIC, "公开"), ("internal", Grade.INTERNAL, "内部"), ("sensitive", Grade.SENSITIVE, "敏感"),
    ("restricted", Grade.RESTRICTED, "高敏感"), ("important", Grade.IMPORTANT, "重要数据"),
])
def test_every_grade_parses_from_its_id_in_any_case_and_spacing(name: str, grade: Grade, zh: str) -> None:
    assert Grade.parse(name) is grade
    assert Grade.parse(f"  {name.upper()} ") is grade
    assert Grade.parse(grade) is grade
    assert grade.id == name
    assert grade.label_zh == zh
    assert Grade.parse_or_highest(name) is grade


@pytest.mark.parametrize("name", ["core", "CORE", "核心数据", "secret", "state_secret", "confidential", "top_secret"])
def test_grades_above_important_are_refused_as_never_carried(name: str) -> None:
    with pytest.raises(GradeError, match="above 'important' and is never carried") as refused:
        Grade.parse(name)
    assert name in str(refused.value)
    assert Grade.parse_or_highest(name) is HIGHEST


@pytest.mark.parametrize("name", ["", "pub", "publicx", "level1", "一般数据"])
def test_unknown_grade_names_are_refused_listing_the_known_ones(name: str) -> None:
    with pytest.raises(GradeError, match=r"unknown grade .*known: public, internal, sensitive, restricted, important"):
        Grade.parse(name)
    assert Grade.parse_or_highest(name) is HIGHEST


@pytest.mark.parametrize("value, type_name", [(None, "NoneType"), (0, "int"), (3, "int"), (["public"], "list"), (b"public", "bytes")])
def test_non_strings_are_refused_and_fail_closed(value: object, type_name: str) -> None:
    with pytest.raises(GradeError, match=f"grade must be a string, got {type_name}"):
        Grade.parse(value)
    assert Grade.parse_or_highest(value) is HIGHEST


def test_highest_is_the_high_water_mark_and_public_when_empty() -> None:
    assert highest([]) is Grade.PUBLIC
    assert highest(iter([Grade.INTERNAL])) is Grade.INTERNAL
    assert highest([Grade.SENSITIVE, Grade.PUBLIC, Grade.RESTRICTED, Grade.INTERNAL]) is Grade.RESTRICTED
    assert highest(reversed(ORDER)) is Grade.IMPORTANT
