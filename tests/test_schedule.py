"""The checkpoint schedule: a pure function of a small config (Contract 1)."""

import pytest

from suite.errors import ConfigError
from suite.schedule import CheckpointSchedule


def test_pythia_default_is_154_steps():
    steps = CheckpointSchedule().steps()
    assert len(steps) == 154
    assert steps[:11] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert steps[11:] == list(range(1000, 143001, 1000))


def test_steps_sorted_unique_and_membership_agrees():
    schedule = CheckpointSchedule(log_until=8, every=4, total_steps=10, extra=(3, 4, 10))
    # {0} ∪ {1,2,4,8} ∪ {4,8} ∪ {10} ∪ {3,4,10}
    assert schedule.steps() == [0, 1, 2, 3, 4, 8, 10]
    assert [s for s in range(-2, 13) if schedule.is_checkpoint(s)] == schedule.steps()


def test_final_step_included_even_off_interval():
    assert CheckpointSchedule(log_until=0, every=300, total_steps=1000).steps() == [
        0,
        300,
        600,
        900,
        1000,
    ]


def test_without_zero_and_without_log_steps():
    schedule = CheckpointSchedule(log_until=0, every=5, total_steps=10, include_zero=False)
    assert schedule.steps() == [5, 10]
    assert not schedule.is_checkpoint(0)


def test_extra_zero_still_exports_init_when_include_zero_is_false():
    schedule = CheckpointSchedule(
        log_until=0, every=5, total_steps=5, include_zero=False, extra=[0]
    )
    assert schedule.steps() == [0, 5]
    assert schedule.extra == (0,)  # lists from YAML become tuples


def test_log_until_not_power_of_two_stops_below_it():
    assert CheckpointSchedule(log_until=6, every=100, total_steps=100).steps() == [0, 1, 2, 4, 100]


def test_single_step_run():
    assert CheckpointSchedule(log_until=1, every=1, total_steps=1).steps() == [0, 1]


def test_pure_same_config_same_steps():
    a = CheckpointSchedule(log_until=64, every=50, total_steps=500, extra=(7,))
    b = CheckpointSchedule(log_until=64, every=50, total_steps=500, extra=(7,))
    assert a == b and a.steps() == b.steps()
    a.steps().append(999)  # callers get a copy; the schedule is not mutated
    assert 999 not in a.steps()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"every": 0}, "every"),
        ({"every": -5}, "every"),
        ({"total_steps": 0}, "total_steps"),
        ({"log_until": -1}, "log_until"),
        ({"log_until": 600, "total_steps": 500, "every": 100}, "log_until"),
        ({"extra": (143001,)}, "extra"),
        ({"extra": (-1,)}, "extra"),
        ({"extra": (1.5,)}, "extra"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as info:
        CheckpointSchedule(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}=")
