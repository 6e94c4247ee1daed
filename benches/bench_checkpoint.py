"""Checkpointing once per epoch: saving model + optimizer state (written to a temporary file, then
renamed) and restoring it (torch.load with weights_only=True, straight onto the device). One call
is one save or one load; bytes and GB/s stored. Like torch.save, no fsync: these are the costs of
serialising into and out of the OS page cache, not of the disk."""

import pytest
import torch

from imgbench import checkpoint, devices, models, workloads


@pytest.mark.parametrize("op", ["save", "load"])
def test_checkpoint(op, model, device, settings, measure, tmp_path):
    torch.manual_seed(0)
    net = models.build(model).to(device)
    opt = workloads.make_optimizer(settings.optimizer, net.parameters())
    spec = models.spec(model)
    x = torch.randn(2, *spec.input_shape[:1], *[min(spec.input_shape[1], 64)] * 2, device=device)
    net(x).sum().backward()
    opt.step()  # the optimizer now holds state (Adam's moments) worth saving
    path = tmp_path / "checkpoint.pt"
    size = checkpoint.save(path, net, opt, epoch=1)
    fn = (lambda: checkpoint.save(path, net, opt, epoch=1)) if op == "save" else \
        (lambda: checkpoint.load(path, net, opt, device))
    measure(workloads.Workload(fn, bytes=size, info={"op": op, "storage": "page cache, no fsync"}),
            {"optimizer": settings.optimizer, "device_name": devices.device_name(device)})
