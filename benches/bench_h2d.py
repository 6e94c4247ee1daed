"""Host <-> device copies into a buffer allocated once: pageable vs pinned host memory, blocking vs
non_blocking, one CIFAR batch to 256 MiB, uint8 vs float32, both directions. And the copy's share of a
training step: the same step with its batch already on the device, or copied there first."""

import pytest
import torch

from imgbench import devices, workloads

SIZES = {"cifar_batch": None, "16MiB": 16 << 20, "256MiB": 256 << 20}  # cifar_batch: 128 x 3 x 32 x 32
DTYPES = {"uint8": torch.uint8, "float32": torch.float32}


def need_accelerator(device: str):
    if device == "cpu":
        others = [d for d in devices.available() if d != "cpu"]
        pytest.skip("no accelerator on this machine: host<->device copies need cuda or mps" if not others
                    else "cpu is the host: no copy to time")


def host_tensor(numel: int, dtype, pinned: bool) -> torch.Tensor:
    t = torch.empty(numel, dtype=dtype, pin_memory=pinned)
    return t.random_(0, 256) if dtype == torch.uint8 else t.normal_()  # never zeros


@pytest.mark.parametrize("direction", ["h2d", "d2h"])
@pytest.mark.parametrize("mode", ["blocking", "non_blocking"])
@pytest.mark.parametrize("memory", ["pageable", "pinned"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("size", list(SIZES))
def test_copy(size, dtype, memory, mode, direction, device, measure):
    need_accelerator(device)
    if memory == "pinned" and not device.startswith("cuda"):
        pytest.skip(f"pinned host memory is a CUDA feature; {device} has none")
    dt = DTYPES[dtype]
    numel = 128 * 3 * 32 * 32 if SIZES[size] is None else SIZES[size] // torch.empty(0, dtype=dt).element_size()
    host = host_tensor(numel, dt, memory == "pinned")
    dev = torch.empty(numel, dtype=dt, device=device)
    src, dst = (host, dev) if direction == "h2d" else (dev, host)
    measure(workloads.copy(src, dst, non_blocking=mode == "non_blocking"),
            {"direction": direction, "memory": memory, "dtype": dtype, "device_name": devices.device_name(device)})


@pytest.mark.parametrize("batch", ["on_device", "copied"])
def test_train_step_copy(batch, case, measure):
    """Each step turns a uint8 batch into float on the device and trains on it; `copied` first copies
    that batch from pinned host memory (non_blocking), `on_device` finds it there already. The copy is
    the only difference: its share of the step is 1 - t(on_device) / t(copied)."""
    need_accelerator(case.device)
    model = case.build_model()
    x, y = case.batch()
    trainer = workloads.Trainer(case.compiled(model), case.settings.optimizer, case.precision,
                                torch.device(case.device).type)
    pin = case.device.startswith("cuda")
    host = torch.randint(0, 256, x.shape, dtype=torch.uint8)
    host, y_host = (host.pin_memory(), y.cpu().pin_memory()) if pin else (host, y.cpu())

    resident, y_resident = host.to(case.device), y_host.to(case.device)

    def step(xb, yb):
        return trainer.step(xb.float().div_(255).contiguous(memory_format=case.torch_format), yb)

    def copied():
        return step(host.to(case.device, non_blocking=True), y_host.to(case.device, non_blocking=True))

    fn = copied if batch == "copied" else (lambda: step(resident, y_resident))
    extra = {"copy_bytes": host.numel() + y_host.numel() * y_host.element_size()} if batch == "copied" else {}
    measure(workloads.Workload(fn, images=x.shape[0], info={"batch": batch, **extra}), case.info())
