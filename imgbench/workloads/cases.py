"""One point of the sweep (model, device, batch size, precision, memory format, compile): builds its
model and data on its device and hands the benches their workloads, FLOPs counted."""

from __future__ import annotations

import os
import shutil
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

from imgbench.core import config
from imgbench.core.config import SEED
from imgbench.core.errors import UserError
from imgbench.core.options import Settings
from imgbench.hw import devices, shm
from imgbench.workloads import data, datasets, epoch, models, steps

COMPILERS = {  # device type -> (language, environment variable, default names)
    "cpu": ("C++", "CXX", ("g++", "c++", "clang++")),  # Inductor builds C++ for the CPU
    "cuda": ("C", "CC", ("gcc", "clang")),  # Triton builds its kernel launcher with the host C
                                            # compiler
}


def compiler_missing(device_type: str) -> bool:
    """Whether torch.compile would fail on its first call for want of a host compiler."""
    if device_type not in COMPILERS:
        return False
    _, env, names = COMPILERS[device_type]
    return not any(shutil.which(c) for c in (os.environ.get(env, names[0]), *names))


def python_headers() -> Path:
    return Path(sysconfig.get_paths()["include"]) / "Python.h"


def compile_missing(device_type: str) -> str | None:
    """Why torch.compile would fail on its first call on this device type (no host compiler; on
    CUDA, no Python headers for Triton's launcher), or None. `imgbench doctor` runs a real compile
    besides."""
    if compiler_missing(device_type):
        language, env, _ = COMPILERS[device_type]
        return (f"torch.compile on {device_type} needs a {language} compiler "
                f"(none found: set {env})")
    if device_type == "cuda" and not python_headers().is_file():
        return (f"torch.compile on cuda needs Python's C headers ({python_headers()} is missing: "
                "install the python3-dev package of this Python)")
    return None


def unsupported(device: str, precision: str = "fp32", compile: str = "off") -> str | None:
    """Why this device cannot run this combination, or None when it can."""
    dev = torch.device(device)
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        if precision in ("tf32", "bf16") and major < 8:
            return (f"{precision} needs an NVIDIA GPU of compute capability 8.0 or newer; {device} "
                    f"({devices.device_name(device)}) is {major}.{minor}")
    elif precision == "tf32":
        return f"tf32 is a mode of NVIDIA GPUs; {device} has none"
    if precision in steps.AUTOCAST and not torch.amp.is_autocast_available(dev.type):
        return f"{precision} autocast is not available on {dev.type} in torch {torch.__version__}"
    if compile == "on":
        return compile_missing(dev.type)
    return None


class EmptyEpoch(UserError):
    """An epoch of this batch size would have no step."""


@dataclass
class Case:
    model: str
    device: str
    batch_size: int
    settings: Settings
    dataset: data.TensorImages | None = None
    precision: str = "fp32"
    memory_format: str = "nchw"
    compile: str = "off"
    # an epoch has at least this many steps (the reference epoch's); 0: the profile's epoch
    epoch_min_steps: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        if self.dataset is not None:
            return datasets.spec(self.settings.dataset).image_shape
        channels, size, _ = models.spec(self.model).input_shape
        size = config.image_size(size, self.settings.profile)
        return channels, size, size

    @property
    def num_classes(self) -> int:
        if self.dataset is not None:
            return datasets.spec(self.settings.dataset).num_classes
        return models.spec(self.model).num_classes

    @property
    def torch_format(self) -> torch.memory_format:
        return (torch.channels_last if self.memory_format == "channels_last"
                else torch.contiguous_format)

    def unsupported(self) -> str | None:
        return unsupported(self.device, self.precision, self.compile)

    def build_model(self) -> torch.nn.Module:
        """The model on its device in its memory format, seeded; eager (see `compiled`)."""
        torch.manual_seed(SEED)
        c, h, _ = self.shape
        return models.build(self.model, self.num_classes, c, h).to(self.device,
                                                                   memory_format=self.torch_format)

    def compiled(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.compile != "on":
            return model
        # Dynamo's state outlives a model: cases before this one would make it compile with dynamic
        # shapes, and past its recompile limit run eager while the result still says "compiled".
        torch._dynamo.reset()
        return torch.compile(model, dynamic=False)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dataset is None:
            x, y = data.synthetic_batch(self.batch_size, self.shape, self.num_classes, SEED,
                                        self.device)
        else:
            n = len(self.dataset)
            items = [self.dataset[i % n] for i in range(self.batch_size)]
            x = torch.stack([x for x, _ in items]).to(self.device)
            y = torch.stack([torch.as_tensor(y) for _, y in items]).to(self.device)
        return x.contiguous(memory_format=self.torch_format), y

    def info(self) -> dict:
        c, h, _ = self.shape
        return {"image_size": h, "in_channels": c, "num_classes": self.num_classes,
                "dataset": self.settings.dataset, "profile": self.settings.profile.name,
                "device_name": devices.device_name(self.device), "precision": self.precision,
                "memory_format": self.memory_format, "compile": self.compile}

    def forward(self) -> steps.Workload:
        model, (x, _) = self.build_model().eval(), self.batch()
        flops = steps.count_flops(lambda: steps.forward(model, x).fn())
        w = steps.forward(self.compiled(model), x, self.precision)
        w.flops = flops
        return w

    def train_step(self) -> steps.Workload:
        model, (x, y) = self.build_model(), self.batch()
        flops = epoch.train_flops_per_image(model, x, y) * x.shape[0]
        w = steps.train_step(self.compiled(model), x, y, self.settings.optimizer, self.precision)
        w.flops = flops
        return w

    def trainer(self, model: torch.nn.Module) -> steps.Trainer:
        """Training steps of `model`, compiled if the case is, with the run's optimizer, at the
        case's precision."""
        return steps.Trainer(self.compiled(model), self.settings.optimizer, self.precision,
                                 torch.device(self.device).type)

    def train_step_copy(self, batch: str) -> steps.Workload:
        """A step that turns a uint8 batch into float on the device and trains on it. `copied`: each
        step first copies that batch from host memory (pinned on CUDA, non_blocking); `on_device`:
        it is there already. The copy is the only difference: its share of the step is
        1 - t(on_device) / t(copied)."""
        if batch not in ("on_device", "copied"):
            raise ValueError(f"unknown batch {batch!r} (valid: on_device, copied)")
        trainer = self.trainer(self.build_model())
        x, y = self.batch()
        host = (torch.randint(0, 256, x.shape, dtype=torch.uint8), y.cpu())
        if self.device.startswith("cuda"):
            host = tuple(t.pin_memory() for t in host)
        on_device = tuple(t.to(self.device) for t in host)

        def step(xb, yb):
            return trainer.step(xb.float().div_(255).contiguous(memory_format=self.torch_format),
                                yb)

        def copied():
            return step(*(t.to(self.device, non_blocking=True) for t in host))

        if batch == "on_device":
            return steps.Workload(lambda: step(*on_device), images=x.shape[0],
                                  info={"batch": batch})
        nbytes = sum(t.numel() * t.element_size() for t in host)
        return steps.Workload(copied, images=x.shape[0],
                              info={"batch": batch, "copy_bytes": nbytes})

    @property
    def epoch_size(self) -> int:
        """Images in one epoch: the profile's for this shape (config.epoch_size), or the minimum
        steps'."""
        return max(config.epoch_size(self.settings.profile, self.shape),
                   self.epoch_min_steps * self.batch_size)

    def empty_epoch(self) -> str | None:
        """Why an epoch of the profile's images would have no step at this batch size, or None."""
        return epoch.empty(self.batch_size, self.epoch_size, "epoch", self.settings.profile)

    def epoch_unsupported(self, path: str) -> str | None:
        """Why this epoch cannot run here: no step, or (the loader path) too little /dev/shm for its
        workers."""
        on_cpu = torch.device(self.device).type == "cpu"
        workers = config.epoch_workers(self.settings.threads, on_cpu)
        if path == "loader" and (short := shm.shortfall(workers, self.batch_size, self.shape)):
            return short
        return self.empty_epoch()

    def epoch_images(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` uint8 images and their labels: the real dataset's, repeated as needed, or seeded
        synthetic ones."""
        if self.dataset is None:
            c, h, w = self.shape
            return data.synthetic_uint8(n, (c, h, w), self.num_classes, SEED)
        reps = -(-n // len(self.dataset))
        return self.dataset.images.repeat(reps, 1, 1, 1)[:n], self.dataset.labels.repeat(reps)[:n]

    def epoch(self, path: str) -> steps.Workload:
        """One epoch over the profile's number of images: `loader` (DataLoader, per-sample
        augmentation on the CPU in config.epoch_workers workers, pinned memory when a GPU takes the
        batches; on the CPU, workers and intra-op threads share the cores: config.epoch_threads) or
        `resident` (all on the device)."""
        if reason := self.empty_epoch():
            raise EmptyEpoch(reason)
        n = self.epoch_size
        c, h, _ = self.shape
        images, labels = self.epoch_images(n)
        if self.dataset is not None:  # the dataset's own normalisation
            mean, std = self.dataset.mean, self.dataset.std
        else:
            mean, std = ((data.MNIST_MEAN, data.MNIST_STD) if c == 1
                         else (data.CIFAR10_MEAN, data.CIFAR10_STD))
        if path == "resident":
            loader = data.ResidentLoader(images, labels, self.batch_size, self.device, mean, std,
                                         seed=SEED)
            info = {"path": path}
        else:
            on_cpu = torch.device(self.device).type == "cpu"
            workers = config.epoch_workers(self.settings.threads, on_cpu)
            threads = config.epoch_threads(self.settings.threads, on_cpu)
            pin = torch.device(self.device).type == "cuda"
            ds = data.TensorImages(images, labels, data.train_transform(h, mean, std))
            loader = data.loader(ds, self.batch_size, num_workers=workers, pin_memory=pin,
                                 persistent_workers=workers > 0, drop_last=True, seed=SEED)
            info = {"path": path, "num_workers": workers, "pin_memory": pin,
                    **({"intra_op_threads": threads} if threads else {})}
        model = self.build_model()
        x, y = self.batch()
        flops = epoch.train_flops_per_image(model, x, y)
        trainer = self.trainer(model.train())
        n_steps = n // self.batch_size
        return epoch.epoch(loader, trainer, torch.device(self.device),
                           devices.synchronizer(self.device), n_steps * self.batch_size, flops,
                           {**info, "steps": n_steps}, self.torch_format,
                           info.get("intra_op_threads"))


def reference_config(device: str) -> str:
    """What the reference epoch resolves to on `device`: its precision and whether it is compiled
    ("bf16-compiled", "fp32-eager"), a parameter of the case, so that a machine that falls back is
    never compared with one that did not under the same key."""
    def can(**combination) -> bool:
        try:
            return unsupported(device, **combination) is None
        except (RuntimeError, AssertionError):  # a device torch cannot query: its cases say why
            return False

    bf16 = can(precision="bf16") and native_bf16(device)
    return f"{'bf16' if bf16 else 'fp32'}-{'compiled' if can(compile='on') else 'eager'}"


def native_bf16(device: str) -> bool:
    """Whether `device` computes in bf16 natively. A CPU without bf16 instructions (AVX-512 BF16,
    AMX) still runs bf16 autocast, emulated: on a 2-core AMD EPYC without them the compiled bf16
    reference epoch had not ended after 300 s (2026-12-06). The reference epoch then runs in fp32,
    the fastest this machine trains. GPUs: unsupported() checks the compute capability."""
    if torch.device(device).type != "cpu":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN: no fast bf16 either
        return False


def reference(device: str, settings: Settings, config_name: str | None = None) -> Case:
    """The suite's "as fast as this hardware trains an image classifier" case, in one fixed
    configuration: speednet at batch 1024 (the speed records' size; 256 in the quick profile),
    channels_last, bf16 autocast (where the device runs bf16 natively) and torch.compile where the
    device has them (`config_name`, from
    reference_config, as collected); an epoch of at least config.REFERENCE_MIN_STEPS steps (the
    quick profile's 512 images would be one step at batch 512: its images/s and compile_s
    noise)."""
    precision, compiled = (config_name or reference_config(device)).split("-")
    batch = 1024 if settings.profile.name == "full" else 256
    return Case("speednet", device, batch, settings, None, precision, "channels_last",
                "on" if compiled == "compiled" else "off",
                epoch_min_steps=config.REFERENCE_MIN_STEPS)
