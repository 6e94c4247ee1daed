"""The model registry (imgbench.models): every model's logits at its own size, at 32x32 and at its
minimum, other class and channel counts, unknown names, duplicate names, nothing downloaded."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from imgbench.workloads import models
from imgbench.workloads.models import UnknownModelError

NAMES = models.names()
RESNETS = [n for n in NAMES if n.startswith("resnet")]
BATCH = 2


def _out(model: nn.Module, shape: tuple[int, ...], batch: int = BATCH,
         seed: int = 0) -> torch.Tensor:
    model.eval()
    x = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def _size_32(name: str) -> int:
    return max(32, models.spec(name).min_image_size)


# --- registry ---------------------------------------------------------------------------------


def test_registry_holds_the_documented_models():
    assert {"mlp", "kerascnn", "tinyvgg", "resnet18", "resnet50"} <= set(NAMES)
    for name in NAMES:
        s = models.spec(name)
        assert s.name == name
        c, h, w = s.input_shape
        assert h == w and c in (1, 3)
        assert s.min_image_size <= h


@pytest.mark.parametrize("name", NAMES)
def test_default_input_gives_logits_of_default_classes(name):
    s = models.spec(name)
    y = _out(models.build(name), s.input_shape)
    assert y.shape == (BATCH, s.num_classes)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_runs_at_32x32(name):
    s = models.spec(name)
    size = _size_32(name)
    y = _out(models.build(name, image_size=size), (s.input_shape[0], size, size))
    assert y.shape == (BATCH, s.num_classes)
    assert y.dtype == torch.float32


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_custom_classes_channels_and_size(name, in_channels):
    size = _size_32(name)
    model = models.build(name, num_classes=7, in_channels=in_channels, image_size=size)
    y = _out(model, (in_channels, size, size))
    assert y.shape == (BATCH, 7)
    assert y.dtype == torch.float32
    # the channel count was really used: the other one is rejected
    other = 4 - in_channels
    with pytest.raises(RuntimeError):
        _out(model, (other, size, size))


# those pool adaptively
@pytest.mark.parametrize("name", [n for n in NAMES if n not in [*RESNETS, "speednet"]])
def test_image_size_is_used_by_fixed_size_models(name):
    s = models.spec(name)
    c = s.input_shape[0]
    # odd sizes too: the flattened size must follow the floor of each pooling
    for size in (s.min_image_size + 1, 33, 47):
        y = _out(models.build(name, num_classes=5, image_size=size), (c, size, size))
        assert y.shape == (BATCH, 5)
    model = models.build(name, image_size=40)
    with pytest.raises(RuntimeError):
        _out(model, (c, 32, 32))


@pytest.mark.parametrize("name", NAMES)
def test_builds_and_runs_at_min_image_size(name):
    s = models.spec(name)
    m = s.min_image_size
    y = _out(models.build(name, num_classes=3, image_size=m), (s.input_shape[0], m, m))
    assert y.shape == (BATCH, 3)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize("name", [n for n in NAMES if models.spec(n).min_image_size > 1])
def test_min_image_size_is_tight(name):
    """One pixel less than the registered minimum really does not work (bypassing the check)."""
    s = models.spec(name)
    m = s.min_image_size - 1
    with pytest.raises((RuntimeError, ValueError)):
        model = s.build(num_classes=3, in_channels=s.input_shape[0], image_size=m)
        _out(model, (s.input_shape[0], m, m))


@pytest.mark.parametrize("name", NAMES)
def test_too_small_image_size_names_the_minimum(name):
    m = models.spec(name).min_image_size
    with pytest.raises(ValueError, match=rf"at least {m}x{m}") as e:
        models.build(name, image_size=m - 1)
    assert repr(name) in str(e.value)
    assert f"got {m - 1}x{m - 1}" in str(e.value)
    assert not isinstance(e.value, UnknownModelError)


def test_too_small_image_size_kerascnn_and_tinyvgg():
    with pytest.raises(ValueError, match="at least 10x10"):
        models.build("kerascnn", image_size=9)
    with pytest.raises(ValueError, match="at least 16x16"):
        models.build("tinyvgg", image_size=15)


@pytest.mark.parametrize("name", NAMES)
def test_returns_logits_not_probabilities(name):
    s = models.spec(name)
    size = _size_32(name)
    torch.manual_seed(0)
    model = models.build(name, image_size=size)
    y = _out(model, (s.input_shape[0], size, size), batch=4)
    assert (y < 0).any(), "softmax/sigmoid outputs are never negative"
    assert not torch.allclose(y.sum(dim=1), torch.ones(4), atol=1e-3)
    assert not torch.allclose(y.exp().sum(dim=1), torch.ones(4), atol=1e-3), "log-softmax output"
    probability_layers = (nn.Softmax, nn.LogSoftmax, nn.Sigmoid, nn.Softmax2d)
    assert not any(isinstance(m, probability_layers) for m in model.modules())


@pytest.mark.parametrize("bad", ["nope", "ResNet18", ""])
def test_unknown_model_names_value_and_lists_valid(bad):
    for call in (lambda: models.build(bad), lambda: models.spec(bad)):
        with pytest.raises(UnknownModelError) as e:
            call()
        msg = str(e.value)
        assert repr(bad) in msg
        for name in NAMES:
            assert name in msg
    assert issubclass(UnknownModelError, ValueError)


def test_unknown_model_is_checked_before_image_size():
    with pytest.raises(UnknownModelError):
        models.build("nope", image_size=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", RESNETS)
def test_resnets_download_nothing(name, tmp_path, monkeypatch):
    home = tmp_path / "torch-home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    def no_download(*args, **kwargs):
        raise AssertionError(f"tried to download weights: {args} {kwargs}")

    import torchvision.models._api as tv_api

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", no_download)
    torch.manual_seed(0)
    a = models.build(name)
    b = models.build(name, num_classes=10, in_channels=1, image_size=32)
    torch.manual_seed(0)
    a_again = models.build(name)
    torch.manual_seed(1)
    c = models.build(name)
    assert list(home.iterdir()) == []
    assert not (tmp_path / "xdg").exists()
    # randomly initialised: the seed decides the weights (pretrained ones would not change with it)
    assert torch.equal(a.conv1.weight, a_again.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    assert b.conv1.in_channels == 1 and b.fc.out_features == 10


@pytest.mark.parametrize("kwargs", [{"num_classes": 0}, {"in_channels": 0}])
def test_zero_classes_or_channels_are_refused_not_defaulted(kwargs):
    with pytest.raises(ValueError, match="needs num_classes and in_channels >= 1"):
        models.build("mlp", **kwargs)


def test_a_taken_name_is_refused():
    before = dict(models.REGISTRY)
    with pytest.raises(ValueError, match="model 'mlp' is already registered"):
        models.register("mlp", (1, 28, 28), "another mlp")(lambda **kw: nn.Identity())
    assert before == models.REGISTRY  # the first mlp is still the one built
    assert models.spec("mlp").build is before["mlp"].build
