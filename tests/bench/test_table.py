"""`imgbench run`'s default table (bench/table.py): one group per test, device and model, so that a
cell's relative figure compares like with like; the user's own choice of columns or grouping
wins."""

from imgbench.bench import table


def case(name, **params):
    return {"name": name, "params": params or None, "fullname": f"benches/x.py::{name}"}


def test_a_group_is_one_test_on_one_device_with_one_model():
    got = table.group([
        case("test_forward[resnet50-cpu-bs32]", model="resnet50", device="cpu", batch_size=32),
        case("test_forward[mlp-cpu-bs128]", model="mlp", device="cpu", batch_size=128),
        case("test_forward[mlp-cpu-bs32]", model="mlp", device="cpu", batch_size=32),
        case("test_loader[bs128-pil]", batch_size=128, source="pil"),
        case("test_empty_round"),
    ])
    assert [(label, [c["name"] for c in cases]) for label, cases in got] == [
        ("test_empty_round", ["test_empty_round"]),
        ("test_forward device=cpu model=mlp", ["test_forward[mlp-cpu-bs128]",
                                               "test_forward[mlp-cpu-bs32]"]),
        ("test_forward device=cpu model=resnet50", ["test_forward[resnet50-cpu-bs32]"]),
        ("test_loader", ["test_loader[bs128-pil]"])]


def test_the_users_own_columns_or_grouping_win():
    assert table.given(["-k", "forward", "--benchmark-columns=min,max"])
    assert table.given(["--benchmark-group-by", "func"])
    assert not table.given(["-k", "forward", "--benchmark-max-time=0.1"])
