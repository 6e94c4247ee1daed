"""Epoch-long units (imgbench.epochs): the epoch workload and its host-time shares, training FLOPs
per image, an epoch without a step, the three transfer-learning modes and the transfer family's
case."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from imgbench.core import config
from imgbench.workloads import data, epoch, models, transfer
from imgbench.workloads.steps import Trainer

QUICK = config.PROFILES["quick"]

# --- epoch.epoch ----------------------------------------------------------------------------------

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
    w = epoch.epoch(batch_list(), Trainer(model, "sgd"), torch.device("cpu"),
                     lambda: syncs.append(1),
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

    assert w.after(1)["epochs_recorded"] == 2
    assert w.after(0)["epochs_recorded"] == 3
    assert w.after(3) == {}


class SlowLoader:
    """Batches that take `delay` seconds each to arrive: a loader the training waits for."""

    def __init__(self, batches, delay: float):
        self.batches, self.delay = batches, delay

    def __iter__(self):
        for b in self.batches:
            time.sleep(self.delay)
            yield b


class Idle:
    """A trainer whose steps take no time."""

    def step(self, x, y):
        pass


def test_waiting_for_batches_is_the_data_stall():
    slow = epoch.epoch(SlowLoader(batch_list(), 0.05), Idle(), torch.device("cpu"), lambda: None,
                       images=12)
    slow.fn()
    assert slow.after(0)["data_stall_share"] > 0.9  # 3 x 50 ms of waiting, steps of no time
    busy = epoch.epoch(batch_list(), Idle(), torch.device("cpu"), lambda: time.sleep(0.15),
                       images=12)
    busy.fn()
    assert busy.after(0)["data_stall_share"] < 0.1  # the same epoch waiting on its device instead


def test_epoch_clock_sums_epochs_after_skip():
    clock = epoch.EpochClock()
    clock.epochs += [(9.0, 9.0, 10.0), (1.0, 2.0, 10.0), (3.0, 0.0, 10.0)]
    assert clock.shares(1) == {"data_stall_share": 0.2, "copy_share": 0.1, "epochs_recorded": 2}
    assert clock.shares(0)["epochs_recorded"] == 3


def test_epoch_steps_once_per_batch():
    model = ChannelsLastOnly()
    loader = data.ResidentLoader(*data.synthetic_uint8(10, (3, 4, 4), 3), 4, "cpu",
                                 data.CIFAR10_MEAN, data.CIFAR10_STD)
    w = epoch.epoch(loader, Trainer(model, "adam"), torch.device("cpu"), lambda: None, images=8,
                     memory_format=torch.channels_last)
    w.fn()
    assert model.calls == 2  # 10 images, batch 4: two full batches


def test_epoch_memory_format_reaches_model():
    model = ChannelsLastOnly()
    w = epoch.epoch(batch_list(), Trainer(model, "sgd"), torch.device("cpu"), lambda: None,
                     images=12, memory_format=torch.channels_last)
    w.fn()
    assert model.calls == 3
    plain = epoch.epoch(batch_list(), Trainer(model, "sgd"), torch.device("cpu"), lambda: None,
                        images=12)
    with pytest.raises(AssertionError, match="channels_last"):
        plain.fn()


# --- epoch.train_flops_per_image ------------------------------------------------------------------

def test_train_flops_per_image_linear():
    layer, batch = nn.Linear(8, 4), 5
    x, y = torch.randn(batch, 8), torch.randint(0, 4, (batch,))
    per_image = epoch.train_flops_per_image(layer, x, y)

    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(layer(x), y).backward()
    assert per_image == counter.get_total_flops() // batch
    # The input is data (no grad), so autograd computes no input gradient: forward plus weight
    # gradient.
    assert per_image == 2 * 8 * 4 + 2 * 8 * 4
    # with an input that needs its gradient, backward also computes it: forward + 2 x backward
    xg = x.clone().requires_grad_(True)
    assert epoch.train_flops_per_image(layer, xg, y) == 2 * 8 * 4 + 2 * 2 * 8 * 4
    assert layer.weight.grad is None  # the counting step leaves no gradients behind


def test_train_flops_per_image_leaves_weights_alone():
    model = tiny_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = batch_list(1)[0]
    flops = epoch.train_flops_per_image(model, x, y)
    assert flops > 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# --- transfer.one_epoch ---------------------------------------------------------------------------

N, BS = 20, 8  # 2 full steps, 4 images left over
SYNC_S = 0.05  # each sync waits this long, as for a device with work queued


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
    w = transfer.one_epoch(mode, model, *transfer_data, BS, "adam",
                           lambda: syncs.append(time.sleep(SYNC_S)))
    setup_calls = len(backbone_calls)
    w.fn()
    return model, before, w, setup_calls, len(backbone_calls) - setup_calls, syncs


@pytest.fixture(scope="module")
def transferred(transfer_data):
    """Each mode run once (one epoch) on a fresh ResNet-18; the tests below read the outcome."""
    return {mode: run_transfer(mode, transfer_data) for mode in transfer.MODES}


def changed(model, before, prefix: str) -> dict[str, bool]:
    return {k: not torch.equal(v, before[k]) for k, v in model.state_dict().items()
            if k.startswith(prefix) and v.is_floating_point()}


@pytest.mark.slow
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
        assert len(syncs) == 2  # around the caching, so cache_s covers the device's work:
        assert w.info["cache_s"] >= SYNC_S  # the sync that ends it is inside


def test_transfer_cached_features_match_backbone(transferred):
    """Training on cached features is the same computation as last_layer: same head afterwards."""
    heads = [transferred[mode][0].fc.weight.detach()
             for mode in ("last_layer", "last_layer_cached")]
    torch.testing.assert_close(heads[0], heads[1])


def test_transfer_unknown_mode(transfer_data):
    with pytest.raises(ValueError, match="'last_layers'") as e:
        transfer.one_epoch("last_layers", resnet(), *transfer_data, BS, "adam", lambda: None)
    for mode in transfer.MODES:
        assert mode in str(e.value)


# --- empty epochs and the transfer family's case --------------------------------------------------

def test_an_epoch_without_a_step_is_named_with_its_profile():
    assert epoch.empty(512, 512, "epoch", QUICK) is None
    assert (epoch.empty(513, 512, "epoch", QUICK)
            == "batch 513 > 512 images per epoch in the quick profile")
    assert transfer.empty_epoch(QUICK.transfer_images, QUICK) is None
    assert transfer.empty_epoch(512, QUICK) == (f"batch 512 > {QUICK.transfer_images} images per "
                                                 "transfer epoch in the quick profile")


@pytest.mark.parametrize(("profile", "size"), [("quick", 32), ("full", 224)])
def test_the_transfer_case_is_a_resnet_epoch_at_the_profile_size(profile, size):
    few = config.Profile(**{**vars(config.PROFILES[profile]), "transfer_images": 20})
    w = transfer.workload("last_layer", "cpu", BS, "sgd", few)
    assert w.images == 16 and w.long
    assert {k: w.info[k]
            for k in ("backbone", "image_size", "images_per_epoch", "mode", "steps")} == {
        "backbone": "resnet18", "image_size": size, "images_per_epoch": 20, "mode": "last_layer",
        "steps": 2}
