"""Checkpointing once per epoch: saving model + optimizer state (written to a temporary file, then
renamed) and restoring it (torch.load with weights_only=True, straight onto the device). One call
is one save or one load; bytes and GB/s stored. Like torch.save, no fsync: these are the costs of
serialising into and out of the OS page cache, not of the disk."""

import pytest

from imgbench.workloads import checkpoint


@pytest.mark.gate(model="kerascnn")  # save and load
@pytest.mark.parametrize("op", ["save", "load"])
def test_checkpoint(op, model, device, settings, measure, tmp_path):
    measure(checkpoint.workload(op, tmp_path / "checkpoint.pt", model, device, settings.optimizer,
                                settings.profile))
