"""A full training epoch: fetch, copy, forward, backward, step, for every batch of the profile's
number of images (quick: 512; full: 50,000, CIFAR-10's training set). Two data paths: `loader`
(DataLoader workers augmenting on the CPU, pinned memory for a GPU) and `resident` (the dataset on
the device, augmentation there, no per-step host sync). Stores images/s and the host's data-stall
share."""

import pytest

from imgbench.workloads import cases


@pytest.mark.gate(model="kerascnn", batch_size=128)  # both data paths
@pytest.mark.parametrize("path", ["loader", "resident"])
def test_epoch(path, case, measure):
    if reason := case.epoch_unsupported(path):
        pytest.skip(reason)
    measure(case.epoch(path), case.info())


@pytest.mark.cpu_heavy
def test_reference_epoch(device, reference, settings, conditions, measure):
    """The suite's "as fast as this hardware trains an image classifier" case (cases.reference):
    speednet, a device-resident epoch, bf16 autocast and torch.compile where the device has them,
    channels_last; `reference` names what the device resolved to (bf16-compiled, fp32-eager)."""
    case = cases.reference(device, settings, reference)
    measure(case.epoch("resident"), {**case.info(), "batch_size": case.batch_size})
