"""Parsing of the axes' command-line values."""

import pytest

from imgbench import axes, models
from imgbench.axes import AxisError


def test_batch_sizes_parse_in_order_without_repeats():
    assert axes.batch_sizes("32,128") == [32, 128]
    assert axes.batch_sizes(" 8, 4 ,8") == [8, 4]


@pytest.mark.parametrize("spec, message", [
    ("0", "batch size 0 is not positive"),
    ("-1", "batch size -1 is not positive"),
    ("x", "batch size 'x' is not an integer"),
    ("", "empty batch size in ''"),
])
def test_bad_batch_sizes(spec, message):
    with pytest.raises(AxisError, match=message):
        axes.batch_sizes(spec)


def test_models_all_and_lists():
    assert axes.model_names("all") == models.names()
    assert axes.model_names("mlp,kerascnn,mlp") == ["mlp", "kerascnn"]
    assert axes.model_names("mlp,all") == ["mlp"] + [n for n in models.names() if n != "mlp"]
    with pytest.raises(AxisError, match=r"unknown model 'vit' \(valid: all, kerascnn, mlp"):
        axes.model_names("vit")


def test_profiles():
    assert axes.profile("quick").max_image_size == 32
    assert axes.profile("full").max_image_size is None
    with pytest.raises(AxisError, match=r"unknown profile 'fast' \(valid: quick, full\)"):
        axes.profile("fast")
