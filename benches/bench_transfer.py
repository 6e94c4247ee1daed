"""Transfer learning with a frozen backbone (torchvision ResNet-18, random weights: the cost is the
same as pretrained ones), one epoch per call over the profile's images (quick: 256 at 32x32; full:
5,000 at 224x224) already on the device. Modes: full fine-tuning; last-layer retraining that runs the
backbone every step; last-layer retraining on features cached once (cache time stored as cache_s)."""

import pytest
import torch

from imgbench import data, devices, epochs, models


@pytest.mark.parametrize("mode", epochs.TRANSFER_MODES)
def test_transfer(mode, device, batch_size, settings, measure):
    size = 32 if settings.profile.max_image_size else 224
    n = settings.profile.transfer_images
    if batch_size > n:
        pytest.skip(f"batch {batch_size} > {n} images per transfer epoch in the {settings.profile.name} profile")
    torch.manual_seed(0)
    model = models.build("resnet18", num_classes=10, image_size=size).to(device)
    x, y = data.synthetic_batch(n, (3, size, size), 10, seed=0, device=device)
    w = epochs.transfer(mode, model, x, y, batch_size, settings.optimizer, devices.synchronizer(device))
    measure(w, {"backbone": "resnet18", "image_size": size, "images_per_epoch": n,
                "device_name": devices.device_name(device)})
