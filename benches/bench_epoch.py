"""A full training epoch: fetch, copy, forward, backward, step, for every batch of the profile's
number of images (quick: 512; full: 50,000, CIFAR-10's training set). Two data paths: `loader`
(DataLoader workers augmenting on the CPU, pinned memory for a GPU) and `resident` (the dataset on the
device, augmentation there, no per-step host sync). Stores images/s and the host's data-stall share."""

import pytest

from imgbench import cases, devices
from imgbench.cases import EmptyEpoch

WORKERS = min(4, devices.usable_cores())


@pytest.mark.parametrize("path", ["loader", "resident"])
def test_epoch(path, case, measure):
    try:
        w = case.epoch(path, WORKERS)
    except EmptyEpoch as e:
        pytest.skip(str(e))
    measure(w, case.info())


def test_reference_epoch(device, settings, conditions, measure):
    """The suite's "as fast as this hardware trains an image classifier" case, in one fixed
    configuration: speednet, a device-resident epoch at batch 1024 (the speed records' size; 512 in
    the quick profile), bf16 autocast and torch.compile where the device has them, channels_last."""
    precision = "bf16" if cases.unsupported(device, "bf16") is None else "fp32"
    compiled = "on" if cases.unsupported(device, compile="on") is None else "off"
    batch = 1024 if settings.profile.name == "full" else 512
    case = cases.Case("speednet", device, batch, settings, None, precision, "channels_last", compiled)
    measure(case.epoch("resident", 0), {**case.info(), "batch_size": batch})
