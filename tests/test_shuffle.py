"""--shuffle SEED: the modules in a random order and the tests in a random order within each, the
same order for the same seed."""

from types import SimpleNamespace

from tests import conftest


def shuffled(seed):
    items = [SimpleNamespace(nodeid=f"tests/test_{m}.py::test_{i}")
             for m in "abcd" for i in range(5)]
    config = SimpleNamespace(getoption=lambda name: seed)
    conftest.pytest_collection_modifyitems(config, items)
    return [item.nodeid for item in items]


def test_modules_stay_together_in_a_drawn_order_and_tests_are_drawn_within_them():
    got = shuffled(7)
    modules = [n.split("::")[0] for n in got]
    runs = [m for i, m in enumerate(modules) if i == 0 or modules[i - 1] != m]
    assert sorted(runs) == sorted(set(runs)) and len(runs) == 4  # each module in one stretch
    assert got == shuffled(7) and got != shuffled(8)
    assert got != shuffled(None) and sorted(got) == sorted(shuffled(None))


def test_without_a_seed_the_order_is_the_files():
    assert shuffled(None) == [f"tests/test_{m}.py::test_{i}" for m in "abcd" for i in range(5)]
