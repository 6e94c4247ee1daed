"""One point of the sweep (imgbench.cases): which combinations a device cannot run and why, and the
Case that builds model, batch and workloads with their FLOPs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from imgbench.core import config
from imgbench.core.options import Settings
from imgbench.hw import devices
from imgbench.workloads import cases, data, epoch, steps

SETTINGS = Settings(devices=["cpu"], batch_sizes=[4], models=["mlp"],
                    profile=config.PROFILES["quick"], threads=1, optimizer="adam",
                    dataset="synthetic", data_root=None)

# MLP on a 1x28x28 input: multiply-adds per image of its three Linear layers
MLP_MACS = (784 * 512, 512 * 512, 512 * 10)


# --- unsupported ----------------------------------------------------------------------------------

def test_tf32_needs_an_nvidia_gpu():
    msg = cases.unsupported("cpu", "tf32")
    assert msg is not None and "tf32" in msg and "cpu" in msg


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_runs_fp32_and_bf16(precision):
    assert cases.unsupported("cpu", precision) is None
    assert cases.unsupported("cpu", precision, compile="off") is None


def test_compile_needs_a_cpp_compiler(monkeypatch):
    monkeypatch.setattr(cases.shutil, "which", lambda name: None)
    msg = cases.unsupported("cpu", "fp32", compile="on")
    assert msg is not None and "C++ compiler" in msg
    assert cases.unsupported("cpu", "fp32", compile="off") is None


def test_compile_with_a_compiler(monkeypatch):
    asked = []
    monkeypatch.setenv("CXX", "my-g++")
    monkeypatch.setattr(cases.shutil, "which",
                        lambda name: asked.append(name) or ("/usr/bin/my-g++" if name == "my-g++"
                                                            else None))
    assert cases.unsupported("cpu", "fp32", compile="on") is None
    assert asked[0] == "my-g++"  # $CXX is the compiler looked for first


def test_precision_without_autocast(monkeypatch):
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    for precision in ("bf16", "fp16"):
        msg = cases.unsupported("cpu", precision)
        assert msg is not None and precision in msg and "cpu" in msg
    assert cases.unsupported("cpu", "fp32") is None  # fp32 needs no autocast


@pytest.fixture
def v100(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(devices, "device_name", lambda name: "Tesla V100")
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: True)


def test_compile_on_cuda_needs_a_c_compiler(monkeypatch):
    monkeypatch.setattr(cases.shutil, "which", lambda name: None)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    msg = cases.unsupported("cuda", "fp32", compile="on")
    assert msg is not None and "compiler" in msg


def test_compile_on_cuda_needs_pythons_headers(monkeypatch, tmp_path):
    monkeypatch.setattr(cases.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(cases.sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    msg = cases.unsupported("cuda", "fp32", compile="on")
    assert msg == (f"torch.compile on cuda needs Python's C headers ({tmp_path / 'Python.h'} is "
                   "missing: install the python3-dev package of this Python)")
    # Inductor's C++ on the CPU does without
    assert cases.unsupported("cpu", "fp32", compile="on") is None
    (tmp_path / "Python.h").write_text("")
    assert cases.unsupported("cuda", "fp32", compile="on") is None


@pytest.mark.parametrize("precision", ["bf16", "tf32"])
def test_cuda_capability_below_8(v100, precision):
    msg = cases.unsupported("cuda", precision)
    assert msg is not None
    assert precision in msg and "8.0" in msg and "7.0" in msg and "Tesla V100" in msg


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_cuda_capability_7_runs_fp16(v100, precision):
    assert cases.unsupported("cuda", precision) is None


def test_cuda_capability_8_runs_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 6))
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: True)
    assert cases.unsupported("cuda", "bf16") is None
    assert cases.unsupported("cuda", "tf32") is None


# --- Case -----------------------------------------------------------------------------------------

def case(model: str = "mlp", **kw) -> cases.Case:
    return cases.Case(model, "cpu", 4, SETTINGS, **kw)


def test_shape_capped_by_profile():
    assert case("resnet18").shape == (3, 32, 32)
    assert case("mlp").shape == (1, 28, 28)  # already below the cap
    full = dataclasses.replace(SETTINGS, profile=config.PROFILES["full"])
    assert cases.Case("resnet18", "cpu", 4, full).shape == (3, 224, 224)
    assert case("resnet18").num_classes == 1000


def test_unsupported_delegates():
    assert case(precision="tf32").unsupported() is not None
    assert case(precision="bf16").unsupported() is None


def test_channels_last_model_and_batch():
    c = case("kerascnn", memory_format="channels_last")
    assert c.torch_format is torch.channels_last
    model = c.build_model()
    conv = model[0].weight
    assert conv.shape == (32, 3, 3, 3)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    x, y = c.batch()
    assert x.shape == (4, 3, 32, 32) and y.shape == (4,)
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()

    plain = case("kerascnn")
    assert plain.torch_format is torch.contiguous_format
    assert plain.build_model()[0].weight.is_contiguous() and plain.batch()[0].is_contiguous()
    torch.testing.assert_close(plain.batch()[0], x)  # same values, other layout


def test_build_model_is_seeded():
    a, b = case().build_model(), case().build_model()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert torch.equal(case().batch()[0], case().batch()[0])


def test_info():
    info = case("mlp", precision="bf16", memory_format="channels_last", compile="off").info()
    assert ({"precision", "memory_format", "compile", "image_size", "device_name", "profile"}
            <= info.keys())
    assert (info["precision"] == "bf16" and info["memory_format"] == "channels_last"
            and info["compile"] == "off")
    assert info["image_size"] == 28 and info["in_channels"] == 1 and info["num_classes"] == 10
    assert info["profile"] == "quick" and info["dataset"] == "synthetic"


def test_forward_flops():
    c = case()
    w = c.forward()
    assert w.flops == 4 * 2 * sum(MLP_MACS)
    # eager, counted afresh
    assert w.flops == steps.count_flops(lambda: c.build_model()(c.batch()[0]))
    assert w.images == 4
    out = w.fn()
    assert out.shape == (4, 10) and not out.requires_grad


def test_forward_flops_bf16():
    w = case(precision="bf16").forward()
    # counted in fp32 on the eager model; precision changes no count
    assert w.flops == 4 * 2 * sum(MLP_MACS)
    assert w.fn().dtype == torch.bfloat16


def test_train_step_flops():
    c = case()
    w = c.train_step()
    model, (x, y) = c.build_model(), c.batch()
    assert w.flops == epoch.train_flops_per_image(model, x, y) * 4
    # forward and weight gradient for every layer, input gradient for all but the first (the data
    # needs none)
    assert w.flops == 4 * (2 * sum(MLP_MACS) + 2 * sum(MLP_MACS) + 2 * sum(MLP_MACS[1:]))
    assert w.images == 4 and w.info["optimizer"] == "adam"
    first, second = w.fn().item(), w.fn().item()
    assert torch.isfinite(torch.tensor([first, second])).all()
    assert first != second  # each call is an optimisation step


def test_resident_epoch_workload():
    c = case()
    w = c.epoch("resident")
    n = SETTINGS.profile.epoch_images
    assert w.long and w.images == (n // 4) * 4
    assert w.info == {"path": "resident", "steps": n // 4}
    assert w.flops == w.images * (2 * sum(MLP_MACS) + 2 * sum(MLP_MACS) + 2 * sum(MLP_MACS[1:]))


def test_compiled_resets_dynamo_and_compiles_static_shapes(monkeypatch):
    calls = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: calls.append("reset"))
    monkeypatch.setattr(torch, "compile",
                        lambda model, **kw: calls.append(("compile", kw)) or model)
    model = torch.nn.Linear(2, 2)
    assert case(compile="on").compiled(model) is model
    assert calls == ["reset", ("compile", {"dynamic": False})]
    assert case(compile="off").compiled(model) is model and len(calls) == 2


def test_an_epoch_without_a_single_step_is_refused():
    big = cases.Case("mlp", "cpu", 1024, SETTINGS)
    assert big.empty_epoch() == "batch 1024 > 512 images per epoch in the quick profile"
    with pytest.raises(cases.EmptyEpoch,
                       match="batch 1024 > 512 images per epoch in the quick profile"):
        big.epoch("resident")
    assert case().empty_epoch() is None


# no worker starts: the loader is not read
@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize(("threads", "workers", "intra"), [(1, 0, 1), (2, 1, 1), (3, 1, 2),
                                                           (8, 4, 4),
                                                           (64, config.EPOCH_WORKERS, 60)])
def test_a_cpu_loader_epoch_splits_the_cores_between_workers_and_threads(threads, workers, intra):
    """On the CPU the loader's workers and the model's intra-op threads share the run's cores (both
    at full count oversubscribed them); the split is recorded."""
    c = cases.Case("mlp", "cpu", 128, dataclasses.replace(SETTINGS, threads=threads))
    w = c.epoch("loader")
    assert w.info == {"path": "loader", "num_workers": workers, "pin_memory": False,
                      "intra_op_threads": intra, "steps": 4}
    assert config.epoch_workers(threads) == min(threads, config.EPOCH_WORKERS)  # a GPU's loader


def test_the_epoch_trains_with_its_threads_and_restores_the_run_s():
    before = torch.get_num_threads()
    c = cases.Case("mlp", "cpu", 128, dataclasses.replace(SETTINGS, threads=1))
    seen = []
    w = c.epoch("loader")
    original = torch.nn.Module.__call__

    def spy(self, *a, **kw):
        seen.append(torch.get_num_threads())
        return original(self, *a, **kw)

    torch.nn.Module.__call__ = spy
    try:
        w.fn()
    finally:
        torch.nn.Module.__call__ = original
    assert seen and set(seen) == {1} and torch.get_num_threads() == before


@pytest.mark.parametrize("batch", ["on_device", "copied"])
def test_train_step_copy_trains_on_the_uint8_batch(batch):
    c = case("kerascnn")
    w = c.train_step_copy(batch)
    assert w.images == 4
    assert w.info == ({"batch": "copied", "copy_bytes": 4 * 3 * 32 * 32 + 4 * 8}
                      if batch == "copied" else {"batch": "on_device"})
    losses = [w.fn().item() for _ in range(3)]
    assert len(set(losses)) == 3  # each call is a step on the same batch


def test_train_step_copy_steps_alike_with_or_without_the_copy():
    """The copy is the only difference: both train the same seeded model on the same batch."""
    assert case("kerascnn").train_step_copy("on_device").fn().item() == \
        case("kerascnn").train_step_copy("copied").fn().item()
    with pytest.raises(ValueError, match="'pinned'"):
        case().train_step_copy("pinned")


def test_reference_case_takes_what_the_device_has(monkeypatch):
    full = dataclasses.replace(SETTINGS, profile=config.PROFILES["full"])
    r = cases.reference("cpu", full)
    assert (r.model, r.batch_size, r.memory_format, r.dataset) == ("speednet", 1024,
                                                                   "channels_last", None)
    quick = cases.reference("cpu", SETTINGS)
    # 512 would be 1 step
    assert quick.batch_size == 256 and quick.epoch_size == config.REFERENCE_MIN_STEPS * 256
    assert r.epoch_size == 50_000  # the profile's epoch is already longer than the minimum
    monkeypatch.setattr(cases, "unsupported", lambda device, precision="fp32", compile="off": "no")
    assert (cases.reference("cpu", SETTINGS).precision,
            cases.reference("cpu", SETTINGS).compile) == ("fp32", "off")
    monkeypatch.setattr(cases, "unsupported", lambda device, precision="fp32", compile="off": None)
    monkeypatch.setattr(cases, "native_bf16", lambda device: True)
    assert (cases.reference("cpu", SETTINGS).precision,
            cases.reference("cpu", SETTINGS).compile) == ("bf16", "on")
    # bf16 emulated (a CPU without bf16 instructions): fp32, still compiled
    monkeypatch.setattr(cases, "native_bf16", lambda device: False)
    assert cases.reference_config("cpu") == "fp32-compiled"


def test_native_bf16_on_the_cpu_is_what_onednn_reports(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert cases.native_bf16("cpu") is True and cases.native_bf16("cuda:0") is True
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False, raising=False)
    assert cases.native_bf16("cpu") is False


@pytest.mark.parametrize("model, profile, images", [("kerascnn", "full", 50_000),
                                                    ("resnet50", "full", 9_964),
                                                    ("resnet50", "quick", 512),
                                                    ("mlp", "full", 50_000)])
def test_an_epoch_holds_the_profiles_images_up_to_its_bytes(model, profile, images):
    c = cases.Case(model, "cpu", 32,
                   dataclasses.replace(SETTINGS, profile=config.PROFILES[profile]))
    assert c.epoch_size == images  # 224-px images stop at 1.5 GB: 9,964 of 150,528 bytes


def test_epoch_images_repeat_a_real_dataset_to_the_epoch():
    images, labels = (torch.arange(3, dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 3, 32, 32),
                      torch.arange(3))
    c = cases.Case("kerascnn", "cpu", 4, dataclasses.replace(SETTINGS, dataset="cifar10"),
                   data.TensorImages(images, labels))
    x, y = c.epoch_images(8)
    assert x.shape == (8, 3, 32, 32) and y.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert x[:, 0, 0, 0].tolist() == y.tolist()
    synthetic = case("kerascnn").epoch_images(8)
    assert synthetic[0].shape == (8, 3, 32, 32) and synthetic[0].dtype == torch.uint8


def test_a_loader_epoch_without_room_in_dev_shm_is_refused_with_the_sizes(monkeypatch):
    monkeypatch.setattr(cases.shm, "free_bytes", lambda path="/dev/shm": 64 * 2**20)
    full = dataclasses.replace(SETTINGS, profile=config.PROFILES["full"], threads=16)
    c = cases.Case("resnet50", "cpu", 128, full)
    assert c.epoch_unsupported("loader") == (
        "/dev/shm has 64 MiB free; 4 loader workers at batch 128 of 3x224x224 need about 588 MiB "
        "(run with a larger /dev/shm, e.g. docker --shm-size=2g)")
    assert c.epoch_unsupported("resident") is None  # no workers on the device-resident path
