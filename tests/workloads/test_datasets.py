"""imgbench.register_dataset and datasets.load: a project's dataset read, checked against its
registration, normalised with the declared or the measured statistics; a bad registration or a
reader's bad output refused in one line."""

import numpy as np
import pytest
import torch

import imgbench
from imgbench.core.errors import UserError
from imgbench.workloads import datasets
from imgbench.workloads.data import DatasetError


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    """Each test registers into a copy of the registry."""
    monkeypatch.setattr(datasets, "REGISTRY", dict(datasets.REGISTRY))
    monkeypatch.setattr(datasets, "_ORIGINS", dict(datasets._ORIGINS))


def stripes(root, train=True):
    """8 numpy images (N, C, H, W) whose channel 0 is all 0 and channel 1 all 255; labels 0-3."""
    images = np.zeros((8, 2, 4, 4), dtype=np.uint8)
    images[:, 1] = 255
    return images, np.arange(8) % 4


def test_a_registered_dataset_loads_normalised_with_measured_statistics():
    assert imgbench.register_dataset("stripes", stripes, image_shape=(2, 4, 4),
                                     num_classes=4) is stripes
    assert datasets.names() == ["cifar10", "mnist", "stripes"]
    assert datasets.spec("stripes").summary == "stripes (registered in test_datasets.py)"
    ds = datasets.load("stripes", None)
    assert len(ds) == 8 and ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    assert ds.mean == pytest.approx((0.0, 1.0)) and ds.std == pytest.approx((1e-6, 1e-6))
    x, y = ds[5]
    assert x.dtype == torch.float32 and x.shape == (2, 4, 4) and int(y) == 1
    assert torch.allclose(x, torch.zeros(2, 4, 4))  # each channel minus its own mean


def test_measured_statistics_are_the_pixels_mean_and_std():
    images = torch.randint(0, 256, (5000, 3, 2, 2), dtype=torch.uint8)  # two chunks of 4096
    mean, std = datasets.measured(images)
    x = images.double().div(255).transpose(0, 1).reshape(3, -1)
    assert mean == pytest.approx(x.mean(1).tolist(), abs=1e-9)
    assert std == pytest.approx(x.std(1, unbiased=False).tolist(), abs=1e-9)


def test_declared_statistics_are_used_and_the_reader_gets_root_and_split(tmp_path):
    seen = []

    @imgbench.register_dataset("mine", image_shape=(1, 3, 3), num_classes=2, mean=[0.5],
                               std=[0.25], summary="my scans")
    def mine(root, train=True):
        seen.append((root, train))
        return torch.full((4, 1, 3, 3), 255, dtype=torch.uint8), torch.tensor([0, 1, 1, 0])

    ds = datasets.load("mine", tmp_path, train=False)
    assert seen == [(str(tmp_path), False)] and (ds.mean, ds.std) == ((0.5,), (0.25,))
    assert torch.allclose(ds[0][0], torch.full((1, 3, 3), 2.0))  # (1 - 0.5) / 0.25
    assert datasets.spec("mine").summary == "my scans"
    augmented = datasets.load("mine", tmp_path, augment=True)  # cropped from a padded image
    assert augmented[0][0].shape == (1, 3, 3) and seen[-1] == (str(tmp_path), True)


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "Mine"}, "the name 'Mine' must be lower-case letters"),
    ({"name": "synthetic"}, "and not 'synthetic'"),
    ({"image_shape": (3, 32)}, "image_shape (3, 32) must be (channels, height, width)"),
    ({"image_shape": (3, 32, 16)}, "images must be square"),
    ({"num_classes": 0}, "num_classes 0 must be an int >= 1"),
    ({"mean": (0.5,)}, "mean (0.5,) must be 2 number(s), one per channel"),
    ({"std": (0.5, 0)}, "std (0.5, 0) must be 2 number(s), one per channel, each > 0"),
    ({"reader": 3}, "the reader 3 is not callable"),
])
def test_a_bad_registration_is_refused_in_one_line(kwargs, message):
    given = {"name": "stripes", "reader": stripes, "image_shape": (2, 4, 4), **kwargs}
    with pytest.raises(UserError) as e:
        imgbench.register_dataset(given.pop("name"), given.pop("reader"), **given)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert "stripes" not in datasets.REGISTRY


def test_a_name_taken_is_refused_and_the_same_definition_again_is_one():
    with pytest.raises(UserError, match=r"dataset 'cifar10' is already registered \(CIFAR-10"):
        imgbench.register_dataset("cifar10", stripes, image_shape=(2, 4, 4))
    for _ in range(2):  # what pytest's second import of a conftest does
        imgbench.register_dataset("stripes", stripes, image_shape=(2, 4, 4), num_classes=4)
    assert datasets.spec("stripes").read is stripes


def broken(root, train=True):
    raise FileNotFoundError(f"no file under {root}")


@pytest.mark.parametrize("reader, message", [
    (broken, "dataset 'bad': its reader failed: FileNotFoundError: no file under None"),
    (lambda root, train: torch.zeros(3), "its reader returned Tensor, not (images, labels)"),
    (lambda root, train: (torch.zeros(2, 2, 4, 4), torch.zeros(2, dtype=torch.int64)),
     "the reader's images are torch.float32 (2, 2, 4, 4); registered: uint8 (N, 2, 4, 4)"),
    (lambda root, train: (torch.zeros(2, 2, 4, 5, dtype=torch.uint8), torch.zeros(2)),
     "images are torch.uint8 (2, 2, 4, 5)"),
    (lambda root, train: (torch.zeros(2, 2, 4, 4, dtype=torch.uint8), torch.zeros(3)),
     "labels have shape (3,) for 2 images"),
    (lambda root, train: (torch.zeros(2, 2, 4, 4, dtype=torch.uint8), torch.zeros(2)),
     "labels are torch.float32; expected integers"),
    (lambda root, train: (torch.zeros(2, 2, 4, 4, dtype=torch.uint8), torch.tensor([0, 4])),
     "labels run from 0 to 4; num_classes=4 allows 0 to 3"),
])
def test_a_readers_bad_output_is_a_dataset_error_in_one_line(reader, message):
    imgbench.register_dataset("bad", reader, image_shape=(2, 4, 4), num_classes=4)
    with pytest.raises(DatasetError) as e:
        datasets.load("bad", None)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_unknown_dataset_names_the_valid_ones():
    with pytest.raises(DatasetError, match=r"unknown dataset 'x' \(valid: cifar10, mnist\)"):
        datasets.spec("x")


def test_the_command_lines_check_and_the_plugins_load_read_the_dataset_once(tmp_path):
    calls = []

    def counted(root, train=True):
        calls.append(root)
        return stripes(root, train)

    imgbench.register_dataset("counted", counted, image_shape=(2, 4, 4), num_classes=4)
    first = datasets.load("counted", tmp_path)
    again = datasets.load("counted", tmp_path, augment=True)
    assert calls == [str(tmp_path)] and again.images is first.images
    datasets.load("counted", tmp_path / "other")  # another root is read
    assert calls == [str(tmp_path), str(tmp_path / "other")]
