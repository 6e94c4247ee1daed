"""Epoch-long units (imgbench.epochs) and the device-resident loader they read from (imgbench.data.ResidentLoader):
batches, shuffling, normalisation and augmentation; the epoch workload and its host-time shares; training
FLOPs per image; the three transfer-learning modes."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from imgbench import data, epochs, models
from imgbench.workloads import Trainer

IDENTITY = ((0.0,), (1 / 255,))  # mean, std under which the loader hands back the uint8 values as floats


def unique_images(n: int, c: int = 1, size: int = 5, seed: int = 0) -> torch.Tensor:
    """n distinct uint8 images with no zero pixel (zero is the padding), labels to be their indices."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(1, 256, (n, c, size, size), generator=g, dtype=torch.uint8)
    assert len({bytes(im.flatten().tolist()) for im in images}) == n
    return images


def as_uint8(x: torch.Tensor) -> torch.Tensor:
    """Undo the IDENTITY normalisation (exact up to float rounding)."""
    assert x.dtype == torch.float32
    r = x.round()
    assert torch.allclose(x, r, atol=1e-3, rtol=0)
    return r.to(torch.uint8)


# --- ResidentLoader ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "bs", "batches"), [(12, 4, 3), (10, 3, 3), (7, 8, 0), (8, 8, 1)])
def test_resident_loader_drops_incomplete_batch(n, bs, batches):
    images, labels = data.synthetic_uint8(n, (3, 4, 4))
    loader = data.ResidentLoader(images, labels, bs, "cpu", *IDENTITY, augment=False)
    assert len(loader) == batches
    out = list(loader)
    assert len(out) == batches
    for x, y in out:
        assert x.shape == (bs, 3, 4, 4) and y.shape == (bs,)
        assert x.dtype == torch.float32 and y.dtype == labels.dtype


def test_resident_loader_reshuffles_each_pass():
    n, bs = 12, 4
    images, labels = unique_images(n), torch.arange(n)
    loader = data.ResidentLoader(images, labels, bs, "cpu", *IDENTITY, augment=False, seed=3)
    passes = [torch.cat([y for _, y in loader]) for _ in range(3)]
    for p in passes:
        assert sorted(p.tolist()) == list(range(n))  # every image once per pass
    assert not torch.equal(passes[0], torch.arange(n))  # shuffled
    assert not torch.equal(passes[0], passes[1]) and not torch.equal(passes[1], passes[2])

    again = data.ResidentLoader(images, labels, bs, "cpu", *IDENTITY, augment=False, seed=3)
    assert torch.equal(torch.cat([y for _, y in again]), passes[0])  # seeded
    other = data.ResidentLoader(images, labels, bs, "cpu", *IDENTITY, augment=False, seed=4)
    assert not torch.equal(torch.cat([y for _, y in other]), passes[0])


def test_resident_loader_incomplete_pass_is_part_of_a_permutation():
    n, bs = 11, 4
    loader = data.ResidentLoader(unique_images(n), torch.arange(n), bs, "cpu", *IDENTITY, augment=False)
    seen = [torch.cat([y for _, y in loader]).tolist() for _ in range(5)]
    for s in seen:
        assert len(s) == 8 and len(set(s)) == 8 and set(s) <= set(range(n))
    assert len({tuple(s) for s in seen}) > 1


def test_resident_loader_without_augmentation_returns_the_images():
    n, bs = 9, 3
    images = unique_images(n, c=3, size=4)
    loader = data.ResidentLoader(images, torch.arange(n), bs, "cpu", (0.0, 0.0, 0.0), (1 / 255,) * 3,
                                 augment=False)
    for x, y in loader:
        assert torch.equal(as_uint8(x), images[y])


def test_resident_loader_normalises_per_channel():
    n, bs = 6, 2
    images = unique_images(n, c=3, size=4)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    loader = data.ResidentLoader(images, torch.arange(n), bs, "cpu", mean, std, augment=False)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    for x, y in loader:
        expected = (images[y].float() / 255 - m) / s
        torch.testing.assert_close(x, expected)
    # and the same as the DataLoader path's eval transform
    x, y = next(iter(loader))
    torch.testing.assert_close(x, torch.stack([data.eval_transform(mean, std)(images[i]) for i in y]))


def crop_of(out: torch.Tensor, source: torch.Tensor, p: int) -> tuple[int, int, bool] | None:
    """The (dy, dx, flipped) that cuts `out` from the zero-padded `source`, or None."""
    _, h, w = source.shape
    padded = F.pad(source, (p, p, p, p))
    for dy, dx, flip in itertools.product(range(2 * p + 1), range(2 * p + 1), (False, True)):
        crop = padded[:, dy:dy + h, dx:dx + w]
        if torch.equal(crop.flip(2) if flip else crop, out):
            return dy, dx, flip
    return None


def test_resident_loader_augmentation_is_padded_crop_and_flip():
    n, bs, p = 16, 4, 2
    images = unique_images(n, c=2, size=5)
    loader = data.ResidentLoader(images, torch.arange(n), bs, "cpu", (0.0, 0.0), (1 / 255, 1 / 255),
                                 padding=p, seed=1)
    found = []
    for _ in range(4):
        labels = []
        for x, y in loader:
            assert x.shape == (bs, 2, 5, 5)
            labels += y.tolist()
            for out, i in zip(as_uint8(x), y.tolist(), strict=True):
                how = crop_of(out, images[i], p)
                assert how is not None, f"output for image {i} is no crop/flip of it"
                found.append(how)
        assert sorted(labels) == list(range(n))
    # the augmentation does something, and covers both flips and more than one shift
    assert {f for _, _, f in found} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in found}) > 5
    assert any((dy, dx) != (p, p) for dy, dx, _ in found)


def test_resident_loader_augmentation_draws_per_image():
    """One batch holds different shifts: the crop is drawn per image, not once per batch."""
    n, p = 32, 4
    images = unique_images(n, c=1, size=6)
    loader = data.ResidentLoader(images, torch.arange(n), n, "cpu", (0.0,), (1 / 255,), padding=p)
    x, y = next(iter(loader))
    shifts = {crop_of(out, images[i], p) for out, i in zip(as_uint8(x), y.tolist(), strict=True)}
    assert None not in shifts
    assert len(shifts) > 3


# --- epochs.epoch ------------------------------------------------------------------------------------

def tiny_net(channels: int = 3, size: int = 4, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * size * size, classes))


class ChannelsLastOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = tiny_net()
        self.calls = 0

    def forward(self, x):
        assert x.is_contiguous(memory_format=torch.channels_last), "batch is not channels_last"
        self.calls += 1
        return self.net(x)


def batch_list(n_batches: int = 3, bs: int = 4, classes: int = 3):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(bs, 3, 4, 4, generator=g), torch.randint(0, classes, (bs,), generator=g))
            for _ in range(n_batches)]


def test_epoch_workload_trains_and_records_shares():
    model = tiny_net()
    syncs = []
    w = epochs.epoch(batch_list(), Trainer(model, "sgd"), torch.device("cpu"), lambda: syncs.append(1),
                     images=12, flops_per_image=1000, info={"path": "list"})
    assert w.long is True
    assert w.images == 12 and w.flops == 12_000
    assert w.info == {"path": "list"}
    assert w.after(0) == {}  # nothing recorded before the first call

    before = [p.detach().clone() for p in model.parameters()]
    w.fn()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert len(syncs) == 1  # synchronised once, at the end of the epoch
    w.fn()
    w.fn()
    assert len(syncs) == 3

    shares = w.after(1)
    assert shares["epochs_recorded"] == 2
    assert 0 <= shares["data_stall_share"] <= 1 and 0 <= shares["copy_share"] <= 1
    assert shares["data_stall_share"] + shares["copy_share"] <= 1
    assert w.after(0)["epochs_recorded"] == 3
    assert w.after(3) == {}


def test_epoch_clock_sums_epochs_after_skip():
    clock = epochs.EpochClock()
    clock.epochs += [(9.0, 9.0, 10.0), (1.0, 2.0, 10.0), (3.0, 0.0, 10.0)]
    assert clock.shares(1) == {"data_stall_share": 0.2, "copy_share": 0.1, "epochs_recorded": 2}
    assert clock.shares(0)["epochs_recorded"] == 3


def test_epoch_steps_once_per_batch():
    model = ChannelsLastOnly()
    loader = data.ResidentLoader(*data.synthetic_uint8(10, (3, 4, 4), 3), 4, "cpu", *IDENTITY)
    w = epochs.epoch(loader, Trainer(model, "adam"), torch.device("cpu"), lambda: None, images=8,
                     memory_format=torch.channels_last)
    w.fn()
    assert model.calls == 2  # 10 images, batch 4: two full batches


def test_epoch_memory_format_reaches_model():
    model = ChannelsLastOnly()
    w = epochs.epoch(batch_list(), Trainer(model, "sgd"), torch.device("cpu"), lambda: None, images=12,
                     memory_format=torch.channels_last)
    w.fn()
    assert model.calls == 3
    plain = epochs.epoch(batch_list(), Trainer(model, "sgd"), torch.device("cpu"), lambda: None, images=12)
    with pytest.raises(AssertionError, match="channels_last"):
        plain.fn()


# --- epochs.train_flops_per_image --------------------------------------------------------------------

def test_train_flops_per_image_linear():
    layer, batch = nn.Linear(8, 4), 5
    x, y = torch.randn(batch, 8), torch.randint(0, 4, (batch,))
    per_image = epochs.train_flops_per_image(layer, x, y)

    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(layer(x), y).backward()
    assert per_image == counter.get_total_flops() // batch
    # The input is data (no grad), so autograd computes no input gradient: forward plus weight gradient.
    assert per_image == 2 * 8 * 4 + 2 * 8 * 4
    # with an input that needs its gradient, backward also computes it: forward + 2 x backward
    xg = x.clone().requires_grad_(True)
    assert epochs.train_flops_per_image(layer, xg, y) == 2 * 8 * 4 + 2 * 2 * 8 * 4
    assert layer.weight.grad is None  # the counting step leaves no gradients behind


def test_train_flops_per_image_leaves_weights_alone():
    model = tiny_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = batch_list(1)[0]
    flops = epochs.train_flops_per_image(model, x, y)
    assert flops > 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# --- epochs.transfer ---------------------------------------------------------------------------------

N, BS = 20, 8  # 2 full steps, 4 images left over


@pytest.fixture(scope="module")
def transfer_data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, 3, 32, 32, generator=g), torch.randint(0, 10, (N,), generator=g)


def resnet() -> nn.Module:
    torch.manual_seed(0)
    return models.build("resnet18", num_classes=10, image_size=32)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run_transfer(mode, transfer_data):
    model = resnet()
    before = snapshot(model)
    backbone_calls = []
    model.layer4.register_forward_hook(lambda *_: backbone_calls.append(1))
    syncs = []
    w = epochs.transfer(mode, model, *transfer_data, BS, "adam", lambda: syncs.append(1))
    setup_calls = len(backbone_calls)
    w.fn()
    return model, before, w, setup_calls, len(backbone_calls) - setup_calls, syncs


@pytest.fixture(scope="module")
def transferred(transfer_data):
    """Each mode run once (one epoch) on a fresh ResNet-18; the tests below read the outcome."""
    return {mode: run_transfer(mode, transfer_data) for mode in epochs.TRANSFER_MODES}


def changed(model, before, prefix: str) -> dict[str, bool]:
    return {k: not torch.equal(v, before[k]) for k, v in model.state_dict().items() if k.startswith(prefix)
            and v.is_floating_point()}


def test_transfer_full_finetune_trains_backbone(transferred):
    model, before, w, setup, during, _ = transferred["full_finetune"]
    assert w.long and w.images == (N // BS) * BS == 16
    assert w.info == {"mode": "full_finetune", "steps": 2}
    assert changed(model, before, "conv1.")["conv1.weight"]
    assert changed(model, before, "layer4.")["layer4.1.conv2.weight"]
    assert changed(model, before, "bn1.")["bn1.running_mean"]  # train mode: batch statistics update
    assert all(changed(model, before, "fc.").values())
    assert setup == 0 and during == 2


@pytest.mark.parametrize("mode", ["last_layer", "last_layer_cached"])
def test_transfer_last_layer_freezes_backbone(mode, transferred):
    model, before, w, setup, during, syncs = transferred[mode]
    assert w.long and w.images == 16 and w.info["steps"] == 2 and w.info["mode"] == mode
    # every backbone weight and BatchNorm statistic is untouched
    backbone = {k: v for k, v in changed(model, before, "").items() if not k.startswith("fc.")}
    assert backbone and not any(backbone.values()), [k for k, v in backbone.items() if v]
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.startswith("fc."))
    assert all(changed(model, before, "fc.").values())
    if mode == "last_layer":
        assert (setup, during) == (0, 2)  # the frozen backbone runs every step
        assert "cache_s" not in w.info
    else:
        assert (setup, during) == (3, 0)  # all N images once (batches of 8: 8 + 8 + 4), untimed
        assert w.info["cache_s"] > 0
        assert len(syncs) == 2  # around the caching, so cache_s covers the device's work


def test_transfer_cached_features_match_backbone(transferred):
    """Training on cached features is the same computation as last_layer: same head afterwards."""
    heads = [transferred[mode][0].fc.weight.detach() for mode in ("last_layer", "last_layer_cached")]
    torch.testing.assert_close(heads[0], heads[1])


def test_transfer_unknown_mode(transfer_data):
    with pytest.raises(ValueError, match="'last_layers'") as e:
        epochs.transfer("last_layers", resnet(), *transfer_data, BS, "adam", lambda: None)
    for mode in epochs.TRANSFER_MODES:
        assert mode in str(e.value)
