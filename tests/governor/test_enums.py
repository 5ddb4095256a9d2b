"""governor.enums against the seed's own enum classes (tests/governor/seed.py, copied from the seed verbatim).

Every member of every seed enum exists here with the seed's string, and every property the seed defines answers the
same for every member, so the tables (recovery minutes, tier quality, SLA minutes, ...) cannot drift by a typo.
"""

from __future__ import annotations

import enum
import inspect

import pytest

from governor import enums
from tests.governor import seed

SEED_ENUMS = [
    obj for _, obj in inspect.getmembers(seed, inspect.isclass) if issubclass(obj, enum.Enum) and obj is not enum.Enum
]


def seed_text(value: object, ours: object) -> object:
    """The seed file's non-ASCII strings are mojibake (UTF-8 read as cp1252, e.g. '✓' is 'âœ“'); undo that. Where
    cp1252 dropped a byte (◐'s 0x90), the seed keeps only the character's leading bytes: compare those."""
    if not isinstance(value, str) or value.isascii():
        return value
    raw = value.encode("cp1252")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return ours if isinstance(ours, str) and ours.encode("utf-8").startswith(raw) else value


def seed_properties(cls: type[enum.Enum]) -> list[str]:
    return [name for name, value in vars(cls).items() if isinstance(value, property)]


def test_every_seed_enum_is_in_the_domain() -> None:
    names = {cls.__name__ for cls in SEED_ENUMS}
    assert names == {
        "FailureType",
        "FallbackTier",
        "DegradationLevel",
        "HealthStatus",
        "RecoveryPhase",
        "TransitionMode",
        "NotificationAudience",
        "CircuitState",
        "FeatureFlag",
    }
    assert sum(len(seed_properties(cls)) for cls in SEED_ENUMS) == 22  # the seed's 22 business rules


@pytest.mark.parametrize("seed_enum", SEED_ENUMS, ids=lambda c: c.__name__)
def test_members_and_values_are_the_seeds_in_the_seeds_order(seed_enum: type[enum.Enum]) -> None:
    ours = getattr(enums, seed_enum.__name__)
    assert [(m.name, m.value) for m in ours] == [(m.name, m.value) for m in seed_enum]


@pytest.mark.parametrize(
    ("seed_enum", "prop"),
    [(cls, prop) for cls in SEED_ENUMS for prop in seed_properties(cls)],
    ids=lambda x: x if isinstance(x, str) else x.__name__,
)
def test_each_property_answers_as_the_seed_for_every_member(seed_enum: type[enum.Enum], prop: str) -> None:
    ours = getattr(enums, seed_enum.__name__)
    for member in seed_enum:
        got = getattr(ours(member.value), prop)
        expected = seed_text(getattr(member, prop), got)
        # the seed returns the next tier/phase as its string; ours returns the enum member (a StrEnum, equal to it)
        assert got == expected, f"{seed_enum.__name__}.{member.name}.{prop}: seed {expected!r}, governor {got!r}"
        assert type(got) in {type(expected), ours} or expected is None


def test_user_messages_are_the_seeds_templates() -> None:
    assert {level.value: level.user_message for level in enums.DegradationLevel} == seed.templates


@pytest.mark.parametrize("kind", [enums.Severity, enums.FallbackTier, enums.DegradationLevel], ids=lambda c: c.__name__)
def test_ranks_follow_declaration_order(
    kind: type[enums.Severity | enums.FallbackTier | enums.DegradationLevel],
) -> None:
    assert [m.rank for m in kind] == list(range(len(kind)))


def test_the_last_tier_and_phase_have_no_successor() -> None:
    assert enums.FallbackTier.TIER_5_ERROR.next_tier is None
    assert enums.RecoveryPhase.POST_MORTEM.next_phase is None
    assert enums.FallbackTier.TIER_0_PRIMARY.next_tier is enums.FallbackTier.TIER_1_SECONDARY
