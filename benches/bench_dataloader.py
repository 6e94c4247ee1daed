"""The input pipeline alone: images/s a DataLoader delivers, no model. Sources: `pil` (PNG bytes
decoded with PIL and augmented per item), `tensor_augment` (uint8 tensors augmented per item), `tensor`
(ready float tensors, nothing to do per item). One call is one pass; workers persist across passes,
so their start-up is warm-up, not throughput."""

import pytest
import torch

from imgbench import data, devices, workloads

WORKERS = sorted({0, 1, 2, *[2**i for i in range(2, 8) if 2**i <= devices.usable_cores()]})


def dataset(source: str, n: int):
    if source == "pil":
        return data.EncodedImages(n, 32, transform=data.train_transform(32, data.CIFAR10_MEAN, data.CIFAR10_STD))
    images, labels = data.synthetic_uint8(n, (3, 32, 32))
    if source == "tensor_augment":
        return data.TensorImages(images, labels, data.train_transform(32, data.CIFAR10_MEAN, data.CIFAR10_STD))
    return data.SyntheticImages(n, (3, 32, 32))


def one_pass(loader):
    for _ in loader:
        pass


@pytest.mark.parametrize("pin", ["off", "on"], ids=lambda v: f"pin_{v}")
@pytest.mark.parametrize("workers", WORKERS, ids=lambda w: f"workers{w}")
@pytest.mark.parametrize("source", ["pil", "tensor_augment", "tensor"])
def test_loader(source, workers, pin, batch_size, settings, measure):
    if workers > devices.usable_cores():
        pytest.skip(f"{workers} workers on {devices.usable_cores()} usable cores")
    if pin == "on" and not torch.cuda.is_available():
        pytest.skip("pin_memory needs a CUDA GPU; this machine has none")
    n = settings.profile.loader_images
    loader = data.loader(dataset(source, n), batch_size, num_workers=workers, pin_memory=pin == "on",
                         persistent_workers=workers > 0, drop_last=True)
    images = (n // batch_size) * batch_size
    measure(workloads.Workload(lambda: one_pass(loader), images=images, info={"images_per_pass": images}),
            {"source": source, "num_workers": workers, "pin_memory": pin == "on", "image_size": 32})
