"""Transfer learning with a frozen backbone (torchvision ResNet-18, random weights: the cost is the
same as pretrained ones), one epoch per call over the profile's images (quick: 256 at 32x32; full:
5,000 at 224x224) already on the device. Modes: full fine-tuning; last-layer retraining that runs
the backbone every step; last-layer retraining on features cached once (cache time stored as
cache_s)."""

import pytest

from imgbench.workloads import transfer


@pytest.mark.cpu_heavy
@pytest.mark.gate(mode="last_layer", batch_size=128)
@pytest.mark.parametrize("mode", transfer.MODES)
def test_transfer(mode, device, batch_size, settings, measure):
    if reason := transfer.empty_epoch(batch_size, settings.profile):
        pytest.skip(reason)
    measure(transfer.workload(mode, device, batch_size, settings.optimizer, settings.profile))
