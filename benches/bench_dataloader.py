"""The input pipeline alone: images/s a DataLoader delivers, no model. Sources: `pil` (PNG bytes
decoded with PIL and augmented per item), `tensor_augment` (uint8 tensors augmented per item),
`tensor` (ready float tensors, nothing to do per item). One call is one pass; workers persist across
passes, so their start-up is warm-up, not throughput. Worker counts above the run's --threads are
deselected. Work of the CPU: the cases run when the CPU is among --device, except those with pinned
memory, which serve an accelerator and run when one is."""

import pytest

from imgbench.core import config
from imgbench.workloads import dataloader


@pytest.mark.gate(source="tensor_augment", workers=0, pin="off", batch_size=128)
@pytest.mark.parametrize("pin", [pytest.param("off", marks=pytest.mark.host),
                                 pytest.param("on", marks=pytest.mark.accelerator)],
                         ids=lambda v: f"pin_{v}")
@pytest.mark.parametrize("workers", config.WORKER_COUNTS, ids=lambda w: f"workers{w}")
@pytest.mark.parametrize("source", dataloader.SOURCES)
def test_loader(source, workers, pin, batch_size, settings, measure):
    if reason := dataloader.unsupported(pin == "on", workers, batch_size):
        pytest.skip(reason)
    measure(dataloader.workload(source, workers, pin == "on", batch_size,
                                settings.profile.loader_images))
