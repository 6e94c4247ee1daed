"""How long a run will take, said before it starts: a cost model per case, from the profile's
rounds and time limits, the work a case does (images x training FLOPs, loader items) and an assumed
rate per device.

An estimate, not a measurement. The CPU rate and the loader's per-item costs were measured on the
2-core development box (torch 2.14.1); the GPU rates are assumptions from public figures (an H100
trains a ResNet-50 at ~2,800 images/s with AMP; fp32 without TF32, as the suite runs, is taken as
~20 TFLOP/s of training work, and a small model's step as launch-bound at ~0.4 ms). The run's end
line says how long it really took, so the first run on a new machine tells how far off the model
is."""

from __future__ import annotations

import dataclasses

from imgbench.core import config
from imgbench.core.options import Settings

# Training FLOPs per image (forward + backward, torch's flop counter:
# epochs.train_flops_per_image) at the sizes the profiles use; a forward pass is about a third.
# tests/test_estimate.py recounts them.
TRAIN_GFLOP = {("kerascnn", 32): 0.0227, ("mlp", 28): 0.0032,
               ("resnet18", 32): 0.2203, ("resnet18", 224): 10.65,
               ("resnet50", 32): 0.5079, ("resnet50", 224): 24.30, ("speednet", 32): 0.7083,
               ("tinyvgg", 32): 0.0065, ("tinyvgg", 64): 0.0316}
# training work per second; the CPU's per thread
GFLOPS = {"cpu": 40.0, "cuda": 20_000.0, "mps": 2_000.0}
# a training step's fixed cost: dispatch, kernel launches, the optimizer's per-tensor work. The
# CPU's is measured (baselines/AMD_EPYC-f25m17-2c/quick.json: mlp and kerascnn train steps of 32
# images take 1.7-2.6 ms more than their FLOPs at the CPU rate; it was 0.05 ms, 2-3x under for
# small models); the GPU's is the assumption above, unmeasured here.
STEP_FLOOR_S = {"cpu": 2e-3, "cuda": 4e-4, "mps": 1e-3}
# a forward pass's: no backward, no optimizer (mlp's 32-image forward: 0.06 ms over its FLOPs)
FORWARD_FLOOR_S = {"cpu": 5e-5, "cuda": 4e-4 / 3, "mps": 1e-3 / 3}
# Checkpoints: model + optimizer state (4 bytes per parameter, Adam 2 moments, SGD momentum 1)
# serialised into the page cache. Fitted to the 2-core box's medians (save: 1.1 GB/s, load 3 GB/s,
# ~3 ms fixed: resnet50 + Adam, 307 MB, saves in 0.275 s and loads in 0.114 s); the old flat
# 10 ms per call was 27x under for resnet50.
PARAMS = {"kerascnn": 167_562, "mlp": 669_706, "resnet18": 11_689_512, "resnet50": 25_557_032,
          "speednet": 1_972_768, "tinyvgg": 19_920}
OPTIMIZER_SLOTS = {"adam": 2, "sgd": 1}
CHECKPOINT_S = 3e-3
SAVE_BYTES_PER_S = 1.1e9
LOAD_BYTES_PER_S = 3.0e9
LOADER_ITEM_S = 1e-4      # one worker's per-item cost of tensor augmentation at 32 px ...
LOADER_BYTE_S = 4e-9      # ... plus this per image byte (224 px: ~0.7 ms)
PIL_ITEM_S = 3e-4         # decoding a PNG first
SETUP_S = 0.5             # per case: model, data, fixtures
COMPILE_S = 60.0          # a first torch.compile
LAUNCH_S = 10.0           # a torchrun launch: processes, imports, process group
CALIBRATION_S = 3.0       # the peaks measured once per device (matmul, conv, copy)
HARNESS_S = 1.0           # 2,000 empty rounds
# training GFLOP per image outside TRAIN_GFLOP (registered models, datasets' sizes) by (model,
# channels, size), and how it was found ("declared" by register_model or "counted" by torch's flop
# counter); those the current estimate used
_REGISTERED: dict[tuple[str, int, int], tuple[float, str]] = {}
_USED: dict[str, str] = {}
_REGISTERED_PARAMS: dict[str, int] = {}


def _kind(device: str) -> str:
    return device.split(":")[0]


def _rate(device: str, s: Settings) -> float:
    kind = _kind(device)
    return GFLOPS.get(kind, GFLOPS["cuda"]) * (s.threads if kind == "cpu" else 1)


def _floor(device: str, table: dict[str, float] = STEP_FLOOR_S) -> float:
    return table.get(_kind(device), table["cuda"])


def checkpoint_call_s(model: str, op: str, optimizer: str) -> float:
    """One save or load of `model`'s state and `optimizer`'s (the bytes the checkpoint holds)."""
    state = 4 * _params(model) * (1 + OPTIMIZER_SLOTS.get(optimizer, 2))
    return CHECKPOINT_S + state / (SAVE_BYTES_PER_S if op == "save" else LOAD_BYTES_PER_S)


def _params(model: str) -> int:
    """Parameters of `model`: the table's, a registered model's counted once."""
    if model in PARAMS:
        return PARAMS[model]
    if model not in _REGISTERED_PARAMS:
        from imgbench.workloads import models

        _REGISTERED_PARAMS[model] = sum(p.numel() for p in models.build(model).parameters())
    return _REGISTERED_PARAMS[model]


def call_seconds(family: str, model: str, device: str, batch: int, s: Settings) -> float:
    """One call of a forward (`forward`) or a train step (any other family)."""
    work = batch * _gflop(model, s) / _rate(device, s)
    if family == "forward":
        return work / 3 + _floor(device, FORWARD_FLOOR_S)
    return work + _floor(device)


def _shape(model: str, s: Settings) -> tuple[int, int]:
    """Channels and image size of the model's cases: the dataset's where the run reads one (as
    workloads.cases.Case.shape), else the model's input capped by the profile."""
    from imgbench.workloads import datasets, models

    if s.dataset != "synthetic":
        c, size, _ = datasets.spec(s.dataset).image_shape
        return c, size
    c, size, _ = models.spec(model).input_shape
    return c, config.image_size(size, s.profile)


def _gflop(model: str, s: Settings) -> float:
    from imgbench.workloads import models

    spec = models.spec(model)
    c, size = _shape(model, s)
    if (model, size) in TRAIN_GFLOP and c == spec.input_shape[0]:
        return TRAIN_GFLOP[(model, size)]
    key = (model, c, size)
    if key not in _REGISTERED:  # a model registered from outside (register_model), or a dataset's
        if spec.gflop_per_image is not None and c == spec.input_shape[0]:  # scaled by the area
            _REGISTERED[key] = (spec.gflop_per_image * (size / spec.input_shape[1])
                                * (size / spec.input_shape[2]), "declared")
        else:
            _REGISTERED[key] = (_count_gflop(model, c, size), "counted")
    gflop, how = _REGISTERED[key]
    _USED[model] = f"{how} ({gflop:.3g} GFLOP/image at {size} px)"
    return gflop


def _count_gflop(model: str, c: int, size: int) -> float:
    """Training GFLOP per image of a model at `c` channels and `size` px (not in TRAIN_GFLOP: a
    registered model, or a dataset's size): torch's flop counter over one forward and backward of
    2 images, as TRAIN_GFLOP was counted."""
    from imgbench.workloads import data, epoch, models

    classes = models.spec(model).num_classes
    x, y = data.synthetic_batch(2, (c, size, size), classes)
    net = models.build(model, num_classes=classes, in_channels=c, image_size=size)
    return epoch.train_flops_per_image(net, x, y) / 1e9


def flop_note() -> str:
    """Where the estimate took the FLOPs of registered models from (none: an empty string)."""
    return "; ".join(f"FLOPs of {m}: {how}" for m, how in sorted(_USED.items()))


def _item_s(shape_bytes: int, pil: bool = False) -> float:
    return LOADER_ITEM_S + LOADER_BYTE_S * shape_bytes + (PIL_ITEM_S if pil else 0.0)


def _short(call_s: float, s: Settings) -> float:
    """A pytest-benchmark case: warm-up calls, a calibration call, rounds until max_time
    (min_rounds at least)."""
    p = s.profile
    return SETUP_S + (p.warmup_calls + 1) * call_s + max(p.max_time, p.min_rounds * call_s)


def _long(epoch_s: float, s: Settings, extra_epochs: int = 0) -> float:
    """An epoch-long case: one warm-up epoch and the profile's rounds."""
    return SETUP_S + (1 + s.profile.long_rounds + extra_epochs) * epoch_s


def _epoch_s(model: str, device: str, batch: int, images: int, s: Settings, loader: bool) -> float:
    steps = images // batch
    compute = steps * batch * _gflop(model, s) / _rate(device, s) + steps * _floor(device)
    if not loader:
        return compute
    c, size = _shape(model, s)
    workers = config.epoch_workers(s.threads, device == "cpu")
    return max(compute, steps * batch * _item_s(c * size * size) / max(1, workers))


def case_seconds(family: str, test: str, p: dict, s: Settings) -> float:
    """Estimated wall seconds of one case: `family` (bench file), `test` (function name), `p` its
    params."""
    device, batch, model = (p.get("device", "cpu"), p.get("batch_size", 32),
                            p.get("model", "kerascnn"))
    if family not in config.FAMILIES and test in ("test_forward", "test_train_step"):
        family = test.removeprefix("test_")  # a project's own bench file (docs/own-model.md)
    rate = _rate(device, s)
    compiled = COMPILE_S if p.get("compile") == "on" else 0.0
    if family in ("forward", "train_step") or test == "test_train_step_copy":
        return _short(call_seconds(family, model, device, batch, s), s) + compiled
    if family == "checkpoint":
        return _short(checkpoint_call_s(model, p.get("op", "save"), s.optimizer), s)
    if family == "dataloader":
        n = (s.profile.loader_images // batch) * batch
        return _short(n * _item_s(3 * 32 * 32, p.get("source") == "pil")
                      / max(1, p.get("workers", 0)), s)
    if family == "epoch":
        if test == "test_reference_epoch":
            batch = 1024 if s.profile.name == "full" else 256
            images = max(config.epoch_size(s.profile, (3, 32, 32)),
                         config.REFERENCE_MIN_STEPS * batch)
            return _long(_epoch_s("speednet", device, batch, images, s, False), s) + COMPILE_S
        c, size = _shape(model, s)
        images = config.epoch_size(s.profile, (c, size, size))
        if batch > images:
            return 0.0
        return (_long(_epoch_s(model, device, batch, images, s, p.get("path") == "loader"), s)
                + compiled)
    if family == "transfer":
        gflop = _gflop("resnet18", s) * (1.0 if p.get("mode") == "full_finetune" else 1 / 3)
        epoch = (s.profile.transfer_images * gflop / rate
                 + (s.profile.transfer_images // batch) * _floor(device))
        return SETUP_S + epoch if p.get("mode") == "last_layer_cached" else _long(epoch, s)
    if family == "ddp":
        from imgbench.workloads.ddp import worlds

        world = p.get("world_size", 1)
        if worlds.unsupported(world, model, device, batch, s):
            return 0.0
        per_rank = (dataclasses.replace(s, threads=max(1, s.threads // world))
                    if _kind(device) == "cpu" else s)
        images = worlds.launch_args(world, model, device, batch, s)["images"] // world
        return LAUNCH_S + _long(_epoch_s(model, device, batch, images, per_rank, False), s,
                                extra_epochs=1)
    if family == "harness":
        return HARNESS_S
    return _short(0.01, s)  # conv layers, copies: short calls, max_time-bound


def run_seconds(cases: list[tuple[str, str, dict]], s: Settings) -> dict[str, float]:
    """Estimated seconds per family of these (family, test, params) cases, the peaks' calibration
    included (under "calibration", once per device)."""
    out: dict[str, float] = {}
    _USED.clear()
    for family, test, p in cases:
        out[family] = out.get(family, 0.0) + case_seconds(family, test, p, s)
    devices = {p.get("device") for _, _, p in cases} - {None}
    if devices:
        out["calibration"] = CALIBRATION_S * len(devices)
    return out


def describe(per_family: dict[str, float], cases: int) -> str:
    total = sum(per_family.values())
    top = sorted(per_family.items(), key=lambda kv: -kv[1])
    parts = ", ".join(f"{name} {sec / 60:.1f}" for name, sec in top if sec >= 30)
    noun = "case" if cases == 1 else "cases"
    return (f"imgbench: {cases} {noun}, estimated {total / 60:.1f} min"
            + (f" ({parts} min)" if parts else "") + (f"; {note}" if (note := flop_note()) else "")
            + "; a cost model with assumed device rates (imgbench/bench/estimate.py), "
            "not a measurement")
