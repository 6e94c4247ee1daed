"""A project of one's own: imgbench.register_model and what sees the model (every option, the
command line before pytest starts, the estimate, the CPU subset, quick ddp, the gate set), the
project's conftest.py imported by the command line, and its benches/ collected without
configuration."""

import dataclasses
import json

import pytest
import torch

import imgbench
from imgbench import cli
from imgbench.bench import estimate, project
from imgbench.bench.settings import model_names
from imgbench.cli import common
from imgbench.core import config
from imgbench.core.errors import UserError
from imgbench.core.options import Settings
from imgbench.workloads import datasets, models
from imgbench.workloads.cases import Case
from imgbench.workloads.ddp import worlds
from tests.helpers import pretend_devices

QUICK = Settings(devices=["cpu"], batch_sizes=[32], models=["mlp"],
                 profile=config.PROFILES["quick"], threads=2, optimizer="adam", dataset="synthetic",
                 data_root=None)
CONFTEST = '''
import functools

import torch.nn as nn

import imgbench


@imgbench.register_model("mine", input_shape=(3, 32, 32), summary="my CNN", cpu_subset=True)
def mine(num_classes=10, in_channels=3, image_size=32):
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, num_classes))


def heavy(num_classes=10, in_channels=3, image_size=64):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, num_classes))


imgbench.register_model("heavy", functools.partial(heavy), input_shape=(3, 64, 64),
                        gflop_per_image=2.0)


@imgbench.register_dataset("dots", image_shape=(3, 16, 16), num_classes=4)
def dots(root, train=True):
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, (8, 3, 16, 16), dtype=np.uint8), \
        np.arange(8) % 4
'''
BENCH = '''
import json

import pytest


@pytest.mark.gate(model="mine", batch_size=32)
def test_forward(case, measure):
    measure(case.forward(), case.info())
'''


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    """Each test registers into a copy of the registry, with the caches that remember a model."""
    monkeypatch.setattr(models, "REGISTRY", dict(models.REGISTRY))
    monkeypatch.setattr(models, "_ORIGINS", dict(models._ORIGINS))
    monkeypatch.setattr(datasets, "REGISTRY", dict(datasets.REGISTRY))
    monkeypatch.setattr(datasets, "_ORIGINS", dict(datasets._ORIGINS))
    monkeypatch.setattr(project, "_LOADED", {})
    monkeypatch.setattr(estimate, "_REGISTERED", {})
    monkeypatch.setattr(estimate, "_REGISTERED_PARAMS", {})


@pytest.fixture
def own(tmp_path, monkeypatch):
    """A project folder with the conftest above and one bench, as the working folder."""
    (tmp_path / "benches").mkdir()
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "benches" / "bench_mine.py").write_text(BENCH)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def tiny(num_classes=10, in_channels=3, image_size=32):
    import torch.nn as nn

    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, num_classes))


def test_a_registered_model_is_known_to_every_model_option_and_builds():
    assert imgbench.register_model("tiny", tiny, input_shape=(3, 32, 32)) is tiny
    assert model_names("tiny") == ["tiny"]
    assert model_names("all") == sorted(["tiny", *models.REGISTRY.keys() - {"tiny"}])
    net = models.build("tiny", image_size=16)
    assert net[1].in_features == 3 * 16 * 16
    assert models.spec("tiny").summary == "tiny (registered in test_project.py)"


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "Mine"}, "the name 'Mine' must be lower-case letters"),
    ({"name": "all"}, "and not 'all'"),
    ({"name": "a-b"}, "the name 'a-b' must be"),
    ({"input_shape": (3, 32)}, "input_shape (3, 32) must be (channels, height, width)"),
    ({"num_classes": 0}, "num_classes 0 must be an int >= 1"),
    ({"gflop_per_image": -1}, "gflop_per_image -1 must be a number > 0"),
    ({"builder": "not a function"}, "the builder 'not a function' is not callable"),
])
def test_a_bad_registration_is_refused_in_one_line(kwargs, message):
    given = {"name": "tiny", "builder": tiny, "input_shape": (3, 32, 32), **kwargs}
    with pytest.raises(UserError) as e:
        imgbench.register_model(given.pop("name"), given.pop("builder"), **given)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert "tiny" not in models.REGISTRY


def test_the_same_definition_twice_is_one_and_another_is_refused(own):
    first = project._import(own / "conftest.py")  # the command line's import ...
    again = project._import(own / "conftest.py")  # ... and pytest's, of the same file
    assert models.spec("mine").build is again.mine and first.mine is not again.mine
    assert models.spec("heavy").build.func is again.heavy  # a builder without code of its own
    with pytest.raises(UserError, match="model 'mine' is already registered"):
        imgbench.register_model("mine", tiny, input_shape=(3, 32, 32))
    with pytest.raises(UserError, match="model 'mlp' is already registered"):
        imgbench.register_model("mlp", tiny, input_shape=(3, 32, 32))


def test_the_command_line_knows_the_projects_models_before_pytest_starts(own):
    args = cli.build().parse_args(["run", "--device", "cpu", "--model", "mine"])
    s, pytest_args = common.pytest_args(args)
    assert s.models == ["mine"] and pytest_args[0] == str(own / "benches")
    s, _ = common.pytest_args(cli.build().parse_args(["run", "--device", "cpu"]))
    assert {"mine", "heavy", "mlp"} <= set(s.models)
    assert project.load(own / "benches") == [own / "conftest.py"]  # imported once
    with pytest.raises(UserError, match=r"unknown model 'yours' \(valid: all, .*mine"):
        common.pytest_args(cli.build().parse_args(["run", "--model", "yours"]))


def test_the_command_line_knows_the_projects_datasets_before_pytest_starts(own):
    s, pytest_args = common.pytest_args(cli.build().parse_args(
        ["run", "--device", "cpu", "--model", "mine", "--dataset", "dots"]))
    assert s.dataset == "dots" and pytest_args[pytest_args.index("--dataset") + 1] == "dots"
    with pytest.raises(UserError, match=r"unknown dataset 'yours' \(valid: synthetic, cifar10, "
                                        r"dots, mnist\)"):
        common.pytest_args(cli.build().parse_args(["run", "--dataset", "yours"]))
    with pytest.raises(UserError, match=r"--data-root 'x' needs a real dataset \(valid: --dataset "
                                        r"cifar10, --dataset dots, --dataset mnist\)"):
        common.pytest_args(cli.build().parse_args(["run", "--data-root", "x"]))


def test_a_case_reads_a_registered_datasets_shape_classes_and_batches(own):
    project.load(own / "benches")
    s = dataclasses.replace(QUICK, dataset="dots")
    case = Case("mine", "cpu", 4, s, datasets.load("dots", None))
    assert case.shape == (3, 16, 16) and case.num_classes == 4
    x, y = case.batch()
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and y.tolist() == [0, 1, 2, 3]
    assert case.build_model()(x).shape == (4, 4)
    assert case.info()["dataset"] == "dots" and case.info()["image_size"] == 16
    images, labels = case.epoch_images(12)
    assert images.shape == (12, 3, 16, 16) and labels.tolist() == [0, 1, 2, 3] * 3
    # the estimate counts the model at the dataset's size
    estimate.run_seconds([("mine", "test_forward", {"model": "mine", "device": "cpu",
                                                    "batch_size": 4})], s)
    assert ("mine", 3, 16) in estimate._REGISTERED


def test_a_conftest_that_fails_to_import_is_named_with_its_line(own, capsys):
    (own / "benches" / "conftest.py").write_text("import os\nraise RuntimeError('broken')\n")
    assert cli.main(["run", "--device", "cpu", "--model", "mine"]) == common.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert f"{own / 'benches' / 'conftest.py'}:2: the project's conftest.py failed to import: " \
           "RuntimeError: broken" in err and len(err.splitlines()) == 1
    (own / "benches" / "conftest.py").write_text(
        "import imgbench\nimgbench.register_model('Bad', print, input_shape=(3, 8, 8))\n")
    with pytest.raises(UserError, match=r"conftest.py: register_model\('Bad'\): the name"):
        project.load(own / "benches")


def test_the_estimate_counts_or_scales_a_registered_models_flops_and_says_which(own):
    project.load(own / "benches")
    cases = [("mine", "test_forward", {"model": "mine", "device": "cpu", "batch_size": 32}),
             ("mine", "test_train_step", {"model": "heavy", "device": "cpu", "batch_size": 32})]
    per_family = estimate.run_seconds(cases, QUICK)
    counted = estimate._REGISTERED[("mine", 3, 32)][0]
    # the conv's forward and its weights' gradient (the input needs none): 2 x 2 x its MACs
    assert counted == pytest.approx(2 * 2 * 3 * 8 * 9 * 30 * 30 / 1e9, rel=0.01)
    assert estimate._REGISTERED[("heavy", 3, 32)] == (0.5, "declared")  # 2.0 at 64 px, area / 4
    # known by its test names: a forward (a third of the training work) and a train step
    want = (estimate._short(estimate.call_seconds("forward", "mine", "cpu", 32, QUICK), QUICK)
            + estimate._short(32 * 0.5 / 80 + estimate.STEP_FLOOR_S["cpu"], QUICK))
    assert per_family["mine"] == pytest.approx(want)
    line = estimate.describe(per_family, 2)
    assert "FLOPs of heavy: declared (0.5 GFLOP/image at 32 px)" in line
    assert "FLOPs of mine: counted (" in line
    assert estimate._params("mine") == 3 * 8 * 9 + 8 + 8 * 10 + 10


def test_quick_ddp_and_the_cpu_subset_take_a_model_registered_for_them(own):
    project.load(own / "benches")
    assert models.cpu_subset() == ["mlp", "kerascnn", "mine"]
    assert worlds.unsupported(2, "mine", "cpu", 32, QUICK) is None
    assert (worlds.unsupported(2, "heavy", "cpu", 32, QUICK)
            == "the quick profile runs ddp for mlp, kerascnn, mine only")


def collect(pytester, *args) -> tuple[list[str], str]:
    result = pytester.runpytest("benches", "--collect-only", "-q", "-p", "no:cacheprovider",
                                "--threads", "2", *args)
    assert result.ret == 0, result.stdout.str()
    return [ln.split("::", 1)[1] for ln in result.stdout.lines if "::" in ln], result.stdout.str()


def test_pytest_collects_a_projects_benches_with_its_models_gate_set_and_cpu_subset(
        pytester, monkeypatch):
    pretend_devices(monkeypatch, gpus=1)
    pytester.makeconftest(CONFTEST)
    pytester.mkdir("benches")
    (pytester.path / "benches" / "bench_mine.py").write_text(BENCH)
    (pytester.path / "benches" / "helper.py").write_text("raise SystemExit('never imported')\n")
    ids, _ = collect(pytester, "--device", "cpu", "--model", "mine,heavy",
                     "--batch-size", "32,128")
    assert ids == ["test_forward[mine-cpu-bs32]", "test_forward[mine-cpu-bs128]",
                   "test_forward[heavy-cpu-bs32]", "test_forward[heavy-cpu-bs128]"]
    ids, _ = collect(pytester, "--device", "cpu", "--model", "all", "--cases", "gate")
    assert ids == ["test_forward[mine-cpu-bs32]"]
    ids, out = collect(pytester, "--device", "auto", "--profile", "full", "--model", "mine,heavy",
                       "--batch-size", "32")
    assert sorted(ids) == ["test_forward[heavy-cuda-bs32]", "test_forward[mine-cpu-bs32]",
                           "test_forward[mine-cuda-bs32]"]
    assert "CPU subset of --device auto --profile full (mlp, kerascnn, mine;" in out


def test_a_project_that_names_its_files_itself_is_collected_once(pytester):
    pytester.makeini("[pytest]\npython_files = bench_*.py\n")
    pytester.makeconftest(CONFTEST)
    pytester.mkdir("benches")
    (pytester.path / "benches" / "bench_mine.py").write_text(BENCH)
    ids, _ = collect(pytester, "--device", "cpu", "--model", "mine", "--batch-size", "32")
    assert ids == ["test_forward[mine-cpu-bs32]"]
    result = pytester.runpytest("benches/bench_mine.py", "--collect-only", "-q", "--device", "cpu",
                                "--model", "mine", "--batch-size", "32", "-p", "no:cacheprovider")
    assert [ln for ln in result.stdout.lines if "::" in ln] == [
        "benches/bench_mine.py::test_forward[mine-cpu-bs32]"]


def test_a_model_registered_elsewhere_leaves_the_builtin_subset_as_it_was():
    assert models.cpu_subset() == list(config.CPU_SUBSET_MODELS)
    imgbench.register_model("tiny", tiny, input_shape=(3, 32, 32))
    assert models.cpu_subset() == list(config.CPU_SUBSET_MODELS)
    assert models.spec("tiny").cpu_subset is False


def test_list_shows_the_projects_models_from_its_folder(own, capsys):
    assert cli.main(["list", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    listed = found["models"]
    assert listed["mine"] == {"input_shape": [3, 32, 32], "num_classes": 10, "summary": "my CNN"}
    assert "heavy" in listed and "mlp" in listed
    assert found["datasets"]["dots"] == {"image_shape": [3, 16, 16], "num_classes": 4,
                                         "summary": "dots (registered in conftest.py)"}
    assert found["axes"]["dataset"] == ["synthetic", "cifar10", "dots", "mnist"]
    assert cli.main(["list"]) == 0
    assert "  dots       3x16x16    dots (registered in conftest.py)" in capsys.readouterr().out


def test_a_plain_pytest_of_the_projects_tests_leaves_its_benches_alone(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.mkdir("benches")
    (pytester.path / "benches" / "bench_mine.py").write_text(BENCH)
    pytester.makepyfile(test_unit="def test_unit():\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider")
    assert [ln for ln in result.stdout.lines if "::" in ln] == ["test_unit.py::test_unit"]
    ids, _ = collect(pytester, "--device", "cpu", "--model", "mine", "--batch-size", "32")
    assert ids == ["test_forward[mine-cpu-bs32]"]
