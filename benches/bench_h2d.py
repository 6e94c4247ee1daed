"""Host <-> device copies into a buffer allocated once: pageable vs pinned host memory, blocking vs
non_blocking, one CIFAR batch to 256 MiB, uint8 vs float32, both directions. And the copy's share of
a training step: the same step with its batch already on the device, or copied there first."""

import pytest

from imgbench.workloads import h2d


# on a GPU only (the CPU has no copy to gate): the CIFAR-sized upload the training loop waits on
@pytest.mark.gate(size="16MiB", dtype="float32", memory="pinned", mode="non_blocking",
                  direction="h2d", device="cuda")
@pytest.mark.parametrize("direction", ["h2d", "d2h"])
@pytest.mark.parametrize("mode", ["blocking", "non_blocking"])
@pytest.mark.parametrize("memory", ["pageable", "pinned"])
@pytest.mark.parametrize("dtype", list(h2d.DTYPES))
@pytest.mark.parametrize("size", list(h2d.SIZES))
def test_copy(size, dtype, memory, mode, direction, device, measure):
    if reason := h2d.unsupported(device, memory):
        pytest.skip(reason)
    measure(h2d.workload(size, dtype, memory, mode, direction, device))


@pytest.mark.parametrize("batch", ["on_device", "copied"])
def test_train_step_copy(batch, case, measure):
    """The copy's share of a step: 1 - t(on_device) / t(copied) (Case.train_step_copy)."""
    if reason := h2d.no_accelerator(case.device):
        pytest.skip(reason)
    measure(case.train_step_copy(batch), case.info())
