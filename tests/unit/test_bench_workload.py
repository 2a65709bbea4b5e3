import random

import pytest

from benchmarks.workload import LengthKind, Lengths, WorkItem, Workload


@pytest.mark.parametrize(
    ("spec", "kind", "first", "second"),
    [
        ("64", LengthKind.FIXED, 64, 0),
        ("uniform:32:128", LengthKind.UNIFORM, 32, 128),
        ("normal:64:16", LengthKind.NORMAL, 64.0, 16.0),
    ],
)
def test_parse(spec, kind, first, second):
    lengths = Lengths.parse(spec)
    assert (lengths.kind, lengths.first, lengths.second) == (kind, first, second)
    assert Lengths.parse(lengths.describe()) == lengths


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("abc", "expected N, uniform"),
        ("uniform:5", "expected N, uniform"),
        ("poisson:1:2", "expected N, uniform"),
        ("0", "at least 1"),
        ("uniform:10:5", "LOW <= HIGH"),
        ("normal:0:1", "MEAN >= 1"),
    ],
)
def test_bad_lengths_name_the_spec(spec, message):
    with pytest.raises(ValueError, match=message) as error:
        Lengths.parse(spec)
    assert repr(spec) in str(error.value)


def test_uniform_draws_stay_within_bounds_and_cover_them():
    lengths = Lengths.parse("uniform:3:6")
    rng = random.Random(1)
    draws = {lengths.draw(rng) for _ in range(500)}
    assert draws == {3, 4, 5, 6}


def test_normal_draws_are_at_least_one_and_centred():
    lengths = Lengths.parse("normal:5:10")
    rng = random.Random(2)
    draws = [lengths.draw(rng) for _ in range(4000)]
    assert min(draws) == 1  # clipped, never 0 or negative
    wide = Lengths.parse("normal:200:10")
    mean = sum(wide.draw(rng) for _ in range(4000)) / 4000
    assert mean == pytest.approx(200, abs=1)


def test_a_seeded_workload_repeats_and_another_seed_differs():
    def items(seed):
        workload = Workload(Lengths.parse("uniform:1:1000"), Lengths.parse("normal:64:16"), seed)
        return [workload.next_item() for _ in range(20)]

    assert items(7) == items(7)
    assert items(7) != items(8)


def test_fixed_lengths_give_one_item():
    workload = Workload(Lengths.fixed(8), Lengths.fixed(64))
    assert {workload.next_item() for _ in range(10)} == {WorkItem(8, 64)}
