"""The data-grade lattice (数据分级) that every routing decision is made on.

Grades are an ordered enum so that "higher" is a comparison, never a string match; unknown or missing
grades resolve to the highest grade (就高从严: when in doubt, the higher grade and the stricter rule).
"""
from __future__ import annotations

from enum import IntEnum

from routing.exceptions import GradeError


class Grade(IntEnum):
    """Ordered data grades after GB/T 43697-2024; a larger value is a stricter grade."""

    PUBLIC = 0  # 公开 (一般数据 1级): may be published as open data
    INTERNAL = 1  # 内部 (一般数据 2级): government-internal
    SENSITIVE = 2  # 敏感 (一般数据 3级): personal information
    RESTRICTED = 3  # 高敏感 (一般数据 4级): sensitive personal information
    IMPORTANT = 4  # 重要数据: important data

    @property
    def id(self) -> str:
        return _IDS[self]  # precomputed: Enum.name is itself a property, and ids are asked for per event

    @property
    def label_zh(self) -> str:
        return _LABELS_ZH[self]

    @classmethod
    def parse(cls, value: object) -> Grade:
        """The grade named by `value`; GradeError for anything that is not a carried grade.

        Names above `important` (核心数据, state secrets) are refused with their own reason: such data is
        never carried by the bus at all.
        """
        if isinstance(value, Grade):
            return value
        if not isinstance(value, str):
            raise GradeError(f"grade must be a string, got {type(value).__name__}")
        key = value.strip().lower()
        if key in _NOT_CARRIED:
            raise GradeError(f"grade {value!r} is above 'important' and is never carried by the bus")
        try:
            return cls[key.upper()]
        except KeyError:
            known = ", ".join(g.id for g in cls)
            raise GradeError(f"unknown grade {value!r} (known: {known})") from None

    @classmethod
    def parse_or_highest(cls, value: object) -> Grade:
        """Fail closed: an unreadable grade is the highest grade."""
        try:
            return cls.parse(value)
        except GradeError:
            return HIGHEST


HIGHEST = Grade.IMPORTANT

_IDS = {grade: grade.name.lower() for grade in Grade}

_LABELS_ZH = {
    Grade.PUBLIC: "公开",
    Grade.INTERNAL: "内部",
    Grade.SENSITIVE: "敏感",
    Grade.RESTRICTED: "高敏感",
    Grade.IMPORTANT: "重要数据",
}

# Grades that exist in the national scheme but are refused outright by hybridbus.
_NOT_CARRIED = frozenset({"core", "核心数据", "secret", "state_secret", "confidential", "top_secret"})


def highest(grades: object) -> Grade:
    """High-water mark of an iterable of grades; an empty iterable is `public`."""
    result = Grade.PUBLIC
    for grade in grades:  # type: ignore[attr-defined]
        if grade > result:
            result = grade
    return result
