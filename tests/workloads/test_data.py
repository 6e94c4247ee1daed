"""Datasets and loaders (imgbench.data): synthetic tensors, PIL images, image folders, CIFAR-10
(binary and python versions) and MNIST read from files the conftest writers lay out in tmp_path, the
DataLoader options, and the device-resident loader (batches, shuffling, normalisation,
augmentation)."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.datasets.cifar as tv_cifar
from torchvision import datasets as tvd
from torchvision.transforms import v2

from imgbench.workloads import data, datasets
from imgbench.workloads.data import DatasetError
from tests.helpers import (
    CIFAR_BIN_TRAIN,
    CIFAR_PY_TRAIN,
    MARK,
    MARK_VALUE,
    idx_labels,
    stack,
    write_cifar_bin,
    write_cifar_py,
    write_mnist,
    write_png_folder,
)


def normalized(images_u8: torch.Tensor, mean, std) -> torch.Tensor:
    x = images_u8.float() / 255
    return (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


def patch_cifar_checksums(monkeypatch):
    """Accept generated CIFAR pickles: the per-batch MD5 check and the batches.meta one in
    _load_meta."""
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)


# --- synthetic ------------------------------------------------------------------------------------


def test_synthetic_batch_shapes_dtypes_and_label_range():
    x, y = data.synthetic_batch(6, (3, 8, 5), num_classes=4, seed=1)
    assert x.shape == (6, 3, 8, 5) and x.dtype == torch.float32
    assert y.shape == (6,) and y.dtype == torch.int64
    assert x.device.type == "cpu" and y.device.type == "cpu"
    assert ((y >= 0) & (y < 4)).all()
    assert (x != 0).any() and x.abs().sum() > 0
    assert x.std() > 0.5  # normal data, not a constant


def test_synthetic_batch_labels_cover_classes():
    _, y = data.synthetic_batch(400, (1, 2, 2), num_classes=3)
    assert set(y.tolist()) == {0, 1, 2}


def test_synthetic_batch_seeded():
    a = data.synthetic_batch(4, (3, 4, 4), 10, seed=7)
    b = data.synthetic_batch(4, (3, 4, 4), 10, seed=7)
    c = data.synthetic_batch(4, (3, 4, 4), 10, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_synthetic_batch_does_not_use_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    data.synthetic_batch(4, (3, 4, 4), 10, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_synthetic_images_len_and_getitem():
    ds = data.SyntheticImages(5, (1, 6, 6), num_classes=3, seed=2)
    assert len(ds) == 5
    x, y = data.synthetic_batch(5, (1, 6, 6), 3, seed=2)
    for i in range(5):
        xi, yi = ds[i]
        assert xi.shape == (1, 6, 6)
        assert torch.equal(xi, x[i]) and int(yi) == int(y[i])
        assert 0 <= int(yi) < 3
    with pytest.raises(IndexError):
        ds[5]


# --- PIL images and transforms --------------------------------------------------------------------


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("size", [32, 20])
def test_fake_pil_items_are_normalized_float_chw(size, augment):
    ds = data.fake_pil(4, image_size=size, num_classes=5, seed=3, augment=augment)
    assert len(ds) == 4
    for i in range(len(ds)):
        x, y = ds[i]
        assert isinstance(x, torch.Tensor)
        assert x.shape == (3, size, size) and x.dtype == torch.float32
        assert isinstance(y, int) and 0 <= y < 5
        # undoing the normalisation lands in [0, 1]
        mean = torch.tensor(data.CIFAR10_MEAN).view(3, 1, 1)
        std = torch.tensor(data.CIFAR10_STD).view(3, 1, 1)
        raw = x * std + mean
        assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
        assert x.min() < 0  # normalised: below-mean pixels are negative


def test_fake_pil_without_augment_is_the_normalized_image():
    ds = data.fake_pil(3, image_size=16, seed=4, augment=False)
    plain = tvd.FakeData(size=3, image_size=(3, 16, 16), num_classes=10,
                         random_offset=4 * 1_000_003)
    for i in range(3):
        pil, label = plain[i]
        expected = normalized(v2.functional.pil_to_tensor(pil), data.CIFAR10_MEAN, data.CIFAR10_STD)
        x, y = ds[i]
        assert torch.allclose(x, expected, atol=1e-5)
        assert y == label


def test_fake_pil_augmentation_varies_and_eval_does_not():
    aug = data.fake_pil(2, image_size=32, seed=0, augment=True)
    plain = data.fake_pil(2, image_size=32, seed=0, augment=False)
    differs = 0
    for seed in range(10):
        torch.manual_seed(seed)
        a, ya = aug[1]
        b, yb = aug[1]
        assert ya == yb
        differs += not torch.equal(a, b)
        p, q = plain[1][0], plain[1][0]
        assert torch.equal(p, q)
    assert differs >= 5  # crop offset (81 choices) x flip: a repeat is rare


def test_fake_pil_seed_changes_images():
    a = data.fake_pil(2, image_size=16, seed=0, augment=False)[0][0]
    b = data.fake_pil(2, image_size=16, seed=0, augment=False)[0][0]
    c = data.fake_pil(2, image_size=16, seed=10, augment=False)[0][0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_train_transform_composition():
    t = data.train_transform(32, data.CIFAR10_MEAN, data.CIFAR10_STD)
    assert isinstance(t, v2.Compose)
    by_type = {type(s): s for s in t.transforms}
    crop = by_type[v2.RandomCrop]
    assert list(crop.padding) == [4, 4, 4, 4]
    assert tuple(crop.size) == (32, 32)
    assert by_type[v2.RandomHorizontalFlip].p == 0.5
    to_dtype = by_type[v2.ToDtype]
    assert to_dtype.dtype == torch.float32 and to_dtype.scale is True
    norm = by_type[v2.Normalize]
    assert list(norm.mean) == pytest.approx(list(data.CIFAR10_MEAN))
    assert list(norm.std) == pytest.approx(list(data.CIFAR10_STD))
    kinds = [type(s) for s in t.transforms]
    # crop and flip happen before the conversion to float, normalisation last
    assert kinds.index(v2.RandomCrop) < kinds.index(v2.ToDtype) < kinds.index(v2.Normalize)
    assert kinds[-1] is v2.Normalize
    assert (list(data.train_transform(28, (0.5,), (0.5,), padding=2).transforms[1].padding)
            == [2, 2, 2, 2])


def test_train_transform_on_uint8_tensor():
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    out = data.train_transform(32, data.CIFAR10_MEAN, data.CIFAR10_STD)(img)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_eval_transform_is_exact_normalisation():
    img = torch.randint(0, 256, (3, 5, 5), dtype=torch.uint8)
    out = data.eval_transform(data.CIFAR10_MEAN, data.CIFAR10_STD)(img)
    assert out.dtype == torch.float32
    assert torch.allclose(out, normalized(img, data.CIFAR10_MEAN, data.CIFAR10_STD), atol=1e-5)


# --- image folders --------------------------------------------------------------------------------


def test_image_folder_reads_pngs(tmp_path):
    written = write_png_folder(tmp_path / "imgs", {"cat": 3, "dog": 2})
    ds = data.image_folder(tmp_path / "imgs")
    assert ds.classes == ["cat", "dog"]
    assert len(ds) == 5
    expected = [(p, 0) for p in written["cat"]] + [(p, 1) for p in written["dog"]]
    for i, (pixels, label) in enumerate(expected):
        img, y = ds[i]
        assert y == label
        assert np.array_equal(np.asarray(img.convert("RGB")), pixels)


def test_image_folder_with_transform(tmp_path):
    written = write_png_folder(tmp_path, {"a": 1, "b": 1}, size=6)
    ds = data.image_folder(str(tmp_path),
                           transform=data.eval_transform(data.CIFAR10_MEAN, data.CIFAR10_STD))
    x, y = ds[1]
    assert y == 1 and x.shape == (3, 6, 6) and x.dtype == torch.float32
    expected = normalized(torch.from_numpy(written["b"][0]).permute(2, 0, 1), data.CIFAR10_MEAN,
                          data.CIFAR10_STD)
    assert torch.allclose(x, expected, atol=1e-5)


def test_image_folder_missing_names_path(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DatasetError) as e:
        data.image_folder(missing)
    assert str(missing) in str(e.value)


def test_image_folder_without_classes_is_dataset_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as e:
        data.image_folder(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value)


# --- CIFAR-10, binary version ---------------------------------------------------------------------


def test_cifar10_bin_returns_the_written_images_and_labels(tmp_path):
    written = write_cifar_bin(tmp_path)
    ds = data.cifar10(tmp_path)
    images, labels = stack(written, CIFAR_BIN_TRAIN)
    assert isinstance(ds, data.TensorImages)
    assert ds.images.dtype == torch.uint8
    assert ds.images.shape == (12, 3, 32, 32)
    assert ds.labels.dtype == torch.int64
    assert len(ds) == 12
    assert np.array_equal(ds.images.numpy(), images)
    assert np.array_equal(ds.labels.numpy(), labels)
    x, y = ds[3]
    assert torch.equal(x, torch.from_numpy(images[3])) and int(y) == labels[3]


def test_cifar10_bin_decodes_channel_major(tmp_path):
    write_cifar_bin(tmp_path)
    first = data.cifar10(tmp_path).images[0]
    assert first[MARK] == MARK_VALUE
    assert int(first.count_nonzero()) == 1
    assert first.nonzero().tolist() == [list(MARK)]


def test_cifar10_bin_test_split(tmp_path):
    written = write_cifar_bin(tmp_path, test_count=4)
    ds = data.cifar10(tmp_path, train=False)
    images, labels = written["test_batch.bin"]
    assert ds.images.shape == (4, 3, 32, 32)
    assert np.array_equal(ds.images.numpy(), images)
    assert np.array_equal(ds.labels.numpy(), labels.astype(np.int64))


def test_cifar10_bin_test_split_needs_only_test_batch(tmp_path):
    write_cifar_bin(tmp_path, skip=tuple(CIFAR_BIN_TRAIN))
    assert len(data.cifar10(tmp_path, train=False)) == 3
    with pytest.raises(DatasetError, match="data_batch_1.bin"):
        data.cifar10(tmp_path)


def test_cifar10_bin_missing_batch_is_named(tmp_path):
    write_cifar_bin(tmp_path, skip=("data_batch_3.bin",))
    with pytest.raises(DatasetError) as e:
        data.cifar10(tmp_path)
    msg = str(e.value)
    assert "data_batch_3.bin" in msg
    for other in ("data_batch_1.bin", "data_batch_2.bin", "data_batch_4.bin"):
        assert other not in msg
    assert str(tmp_path / data.CIFAR_BIN) in msg


def test_cifar10_bin_missing_test_batch_is_named(tmp_path):
    write_cifar_bin(tmp_path, skip=("test_batch.bin",))
    with pytest.raises(DatasetError, match="test_batch.bin"):
        data.cifar10(tmp_path, train=False)


@pytest.mark.parametrize("delta", [-1, 1, -3072])
def test_cifar10_bin_truncated_file_is_corrupt(tmp_path, delta):
    write_cifar_bin(tmp_path)
    path = tmp_path / data.CIFAR_BIN / "data_batch_2.bin"
    content = path.read_bytes()
    path.write_bytes(content[:delta] if delta < 0 else content + b"\0" * delta)
    with pytest.raises(DatasetError) as e:
        data.cifar10(tmp_path)
    msg = str(e.value)
    assert "corrupt" in msg
    assert "data_batch_2.bin" in msg
    assert str(len(content) + delta) in msg


def test_cifar10_bin_empty_file_is_corrupt(tmp_path):
    write_cifar_bin(tmp_path)
    (tmp_path / data.CIFAR_BIN / "data_batch_5.bin").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"corrupt.*data_batch_5\.bin"):
        data.cifar10(tmp_path)


def test_cifar10_bin_label_out_of_range_is_corrupt(tmp_path):
    write_cifar_bin(tmp_path)
    path = tmp_path / data.CIFAR_BIN / "test_batch.bin"
    raw = bytearray(path.read_bytes())
    raw[3073] = 10  # label byte of the second record
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"corrupt.*test_batch\.bin.*label 10"):
        data.cifar10(tmp_path, train=False)


@pytest.mark.parametrize("train", [True, False])
def test_cifar10_no_dataset_names_root_and_folders(tmp_path, train):
    (tmp_path / "something-else").mkdir()
    with pytest.raises(DatasetError) as e:
        data.cifar10(tmp_path, train=train)
    msg = str(e.value)
    assert str(tmp_path) in msg
    assert data.CIFAR_BIN in msg and data.CIFAR_PY in msg
    assert ("data_batch_1.bin" in msg) is train
    assert ("test_batch.bin" in msg) is not train


def test_cifar10_bin_is_preferred_over_python(tmp_path, monkeypatch):
    patch_cifar_checksums(monkeypatch)
    written = write_cifar_bin(tmp_path)
    write_cifar_py(tmp_path)
    assert np.array_equal(data.cifar10(tmp_path).images.numpy(), stack(written, CIFAR_BIN_TRAIN)[0])


# --- CIFAR-10, python version ---------------------------------------------------------------------


def test_cifar10_python_returns_the_written_images(tmp_path, monkeypatch):
    patch_cifar_checksums(monkeypatch)
    written = write_cifar_py(tmp_path)
    ds = data.cifar10(tmp_path)
    images, labels = stack(written, CIFAR_PY_TRAIN)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (10, 3, 32, 32)
    assert ds.images.is_contiguous()
    assert np.array_equal(ds.images.numpy(), images)
    assert ds.labels.dtype == torch.int64
    assert np.array_equal(ds.labels.numpy(), labels)
    first = ds.images[0]
    assert first[MARK] == MARK_VALUE and first.nonzero().tolist() == [list(MARK)]


def test_cifar10_python_test_split(tmp_path, monkeypatch):
    patch_cifar_checksums(monkeypatch)
    written = write_cifar_py(tmp_path, test_count=4)
    ds = data.cifar10(tmp_path, train=False)
    images, labels = written["test_batch"]
    assert np.array_equal(ds.images.numpy(), images)
    assert np.array_equal(ds.labels.numpy(), labels.astype(np.int64))


def test_cifar10_python_unofficial_files_fail_checksum(tmp_path):
    write_cifar_py(tmp_path)
    with pytest.raises(DatasetError) as e:
        data.cifar10(tmp_path)
    msg = str(e.value)
    assert "checksum" in msg
    assert str(tmp_path / data.CIFAR_PY) in msg


@pytest.mark.parametrize("name", ["data_batch_4", "batches.meta"])
def test_cifar10_python_missing_file_is_named(tmp_path, monkeypatch, name):
    patch_cifar_checksums(monkeypatch)
    write_cifar_py(tmp_path, skip=(name,))
    with pytest.raises(DatasetError) as e:
        data.cifar10(tmp_path)
    assert name in str(e.value)
    assert "missing" in str(e.value)


# --- MNIST ----------------------------------------------------------------------------------------


def test_mnist_returns_the_written_images_and_labels(tmp_path):
    written = write_mnist(tmp_path, n_train=5)
    ds = data.mnist(tmp_path)
    images, labels = written["train"]
    assert ds.images.shape == (5, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert np.array_equal(ds.images[:, 0].numpy(), images)
    assert ds.labels.dtype == torch.int64
    assert np.array_equal(ds.labels.numpy(), labels.astype(np.int64))
    assert ds.images[0].nonzero().tolist() == [[0, 4, 20]]
    assert int(ds.images[0, 0, 4, 20]) == 200
    x, y = ds[2]
    assert x.shape == (1, 28, 28) and int(y) == labels[2]


def test_mnist_test_split(tmp_path):
    written = write_mnist(tmp_path, n_test=4)
    ds = data.mnist(tmp_path, train=False)
    images, labels = written["t10k"]
    assert ds.images.shape == (4, 1, 28, 28)
    assert np.array_equal(ds.images[:, 0].numpy(), images)
    assert np.array_equal(ds.labels.numpy(), labels.astype(np.int64))


@pytest.mark.parametrize("name,train", [("train-images-idx3-ubyte", True),
                                        ("train-labels-idx1-ubyte", True),
                                        ("t10k-images-idx3-ubyte", False)])
def test_mnist_missing_file_is_named(tmp_path, name, train):
    write_mnist(tmp_path, skip=(name,))
    with pytest.raises(DatasetError) as e:
        data.mnist(tmp_path, train=train)
    assert name in str(e.value)
    assert str(tmp_path / "MNIST" / "raw") in str(e.value)


def test_mnist_empty_root(tmp_path):
    with pytest.raises(DatasetError) as e:
        data.mnist(tmp_path)
    assert "train-images-idx3-ubyte" in str(e.value) and "train-labels-idx1-ubyte" in str(e.value)


def test_mnist_truncated_images_is_dataset_error(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="corrupt"):
        data.mnist(tmp_path)


@pytest.mark.parametrize("magic,itemsize", [(0, 1), (0x0A03, 1), (0x0B03, 2)],
                         ids=["magic-0", "unknown-type-10", "int16"])
def test_mnist_bad_header_is_dataset_error(tmp_path, magic, itemsize):
    write_mnist(tmp_path, n_train=2)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">IIII", magic, 2, 28, 28) + bytes(2 * 28 * 28 * itemsize))
    with pytest.raises(DatasetError, match="corrupt"):
        data.mnist(tmp_path)


def test_mnist_image_label_count_mismatch_is_dataset_error(tmp_path):
    write_mnist(tmp_path, n_train=5)
    labels = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes(idx_labels(np.arange(3, dtype=np.uint8)))
    with pytest.raises(DatasetError):
        data.mnist(tmp_path)


# --- datasets.load() of the built-in datasets ---------------------------------------------------


def test_real_cifar10_is_normalized_float(tmp_path):
    written = write_cifar_bin(tmp_path)
    images, labels = stack(written, CIFAR_BIN_TRAIN)
    ds = datasets.load("cifar10", tmp_path)
    assert len(ds) == len(labels)
    for i in (0, 5, 11):
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
        expected = normalized(torch.from_numpy(images[i]), data.CIFAR10_MEAN, data.CIFAR10_STD)
        assert torch.allclose(x, expected, atol=1e-5)
        assert int(y) == labels[i]


def test_real_cifar10_augmented_and_test_split(tmp_path):
    write_cifar_bin(tmp_path, test_count=2)
    ds = datasets.load("cifar10", tmp_path, train=False, augment=True)
    assert len(ds) == 2
    x, _ = ds[0]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32)


def test_real_mnist_is_normalized_float(tmp_path):
    written = write_mnist(tmp_path, n_train=3)
    images, _ = written["train"]
    ds = datasets.load("mnist", tmp_path)
    x, _ = ds[1]
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28)
    expected = normalized(torch.from_numpy(images[1]).unsqueeze(0), data.MNIST_MEAN, data.MNIST_STD)
    assert torch.allclose(x, expected, atol=1e-5)
    x_aug, _ = datasets.load("mnist", tmp_path, augment=True)[1]
    assert x_aug.shape == (1, 28, 28) and x_aug.dtype == torch.float32


@pytest.mark.parametrize("name", datasets.names())
def test_real_without_root_is_dataset_error(name):
    with pytest.raises(DatasetError) as e:
        datasets.load(name, None)
    assert name in str(e.value)


# --- loader() -------------------------------------------------------------------------------------


def indexed(n: int) -> data.TensorImages:
    """Images whose pixels and label are their index, so that order is visible."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return data.TensorImages(images, torch.arange(n))


def order(dl) -> list[int]:
    return [int(v) for _, y in dl for v in y]


def test_loader_batch_shapes():
    ds = data.SyntheticImages(10, (3, 4, 4), num_classes=5)
    batches = list(data.loader(ds, 4))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.shape == (4, 3, 4, 4) and x.dtype == torch.float32
    assert y.shape == (4,) and y.dtype == torch.int64


def test_loader_drop_last():
    ds = data.SyntheticImages(10, (3, 4, 4))
    dl = data.loader(ds, 4, drop_last=True)
    assert len(dl) == 2
    assert [len(y) for _, y in dl] == [4, 4]
    assert len(data.loader(ds, 5, drop_last=True)) == 2


def test_loader_unshuffled_keeps_order():
    dl = data.loader(indexed(7), 3, shuffle=False)
    assert order(dl) == list(range(7))
    x, y = next(iter(dl))
    assert x[:, 0, 0, 0].tolist() == y.tolist()


def test_loader_seeded_shuffle():
    ds = indexed(32)
    a = order(data.loader(ds, 5, seed=0))
    b = order(data.loader(ds, 5, seed=0))
    c = order(data.loader(ds, 5, seed=1))
    assert a == b
    assert a != c
    assert a != list(range(32))
    assert sorted(a) == list(range(32)) == sorted(c)


@pytest.mark.parametrize("kwargs", [{"persistent_workers": True}, {"prefetch_factor": 2},
                                    {"persistent_workers": True, "prefetch_factor": 2}])
def test_loader_worker_options_need_workers(kwargs):
    with pytest.raises(ValueError,
                       match="persistent_workers and prefetch_factor need num_workers > 0"):
        data.loader(indexed(4), 2, num_workers=0, **kwargs)


def test_loader_with_a_persistent_worker():
    ds = indexed(11)
    dl = data.loader(ds, 3, num_workers=1, pin_memory=False, persistent_workers=True,
                     prefetch_factor=2, seed=3)
    assert dl.num_workers == 1 and dl.persistent_workers and dl.prefetch_factor == 2
    batches = list(dl)
    assert len(batches) == 4
    assert [len(y) for _, y in batches] == [3, 3, 3, 2]
    # the same seeded order as in the main process
    assert [int(v) for _, y in batches for v in y] == order(data.loader(ds, 3, seed=3))


def test_fake_pil_seeds_share_no_images():
    a, b = (data.fake_pil(4, image_size=8, seed=0, augment=False),
            data.fake_pil(4, image_size=8, seed=1, augment=False))
    assert not any(torch.equal(a[i][0], b[j][0]) for i in range(4) for j in range(4))


def test_real_rejects_an_unknown_dataset_by_name():
    with pytest.raises(data.DatasetError,
                       match=r"unknown dataset 'imagenet' \(valid: cifar10, mnist\)"):
        datasets.load("imagenet", "/tmp")


def test_unreadable_cifar_file_is_a_dataset_error(tmp_path, monkeypatch):
    write_cifar_bin(tmp_path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(data.np, "fromfile", refuse)
    with pytest.raises(data.DatasetError,
                       match=r"cifar10: cannot read '.*data_batch_1.bin': Permission denied"):
        data.cifar10(tmp_path)


def test_encoded_images_decode_back_to_the_pixels():
    ds = data.EncodedImages(4, image_size=8, seed=3)
    images, labels = data.synthetic_uint8(4, (3, 8, 8), seed=3)
    assert len(ds) == 4 and all(isinstance(b, bytes) and b[:4] == b"\x89PNG" for b in ds.encoded)
    for i in range(4):
        img, label = ds[i]
        assert torch.equal(v2.functional.pil_to_tensor(img), images[i]) and label == labels[i]


# --- ResidentLoader -------------------------------------------------------------------------------

# mean, std under which the loader hands back the uint8 values as floats
IDENTITY = ((0.0,), (1 / 255,))


def unique_images(n: int, c: int = 1, size: int = 5, seed: int = 0) -> torch.Tensor:
    """n distinct uint8 images with no zero pixel (zero is the padding), labels to be their
    indices."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(1, 256, (n, c, size, size), generator=g, dtype=torch.uint8)
    assert len({bytes(im.flatten().tolist()) for im in images}) == n
    return images


def as_uint8(x: torch.Tensor) -> torch.Tensor:
    """Undo the IDENTITY normalisation (exact up to float rounding)."""
    assert x.dtype == torch.float32
    r = x.round()
    assert torch.allclose(x, r, atol=1e-3, rtol=0)
    return r.to(torch.uint8)


@pytest.mark.parametrize(("n", "bs", "batches"), [(12, 4, 3), (10, 3, 3), (7, 8, 0), (8, 8, 1)])
def test_resident_loader_drops_incomplete_batch(n, bs, batches):
    images, labels = data.synthetic_uint8(n, (3, 4, 4))
    loader = data.ResidentLoader(images, labels, bs, "cpu", *IDENTITY, augment=False)
    assert len(loader) == batches
    out = list(loader)
    assert len(out) == batches
    for x, y in out:
        assert x.shape == (bs, 3, 4, 4) and y.shape == (bs,)
        assert x.dtype == torch.float32 and y.dtype == labels.dtype


def test_resident_loader_reshuffles_each_pass():
    n, bs = 12, 4
    images, labels = unique_images(n), torch.arange(n)
    loader = data.ResidentLoader(images, labels, bs, "cpu", *IDENTITY, augment=False, seed=3)
    passes = [torch.cat([y for _, y in loader]) for _ in range(3)]
    for p in passes:
        assert sorted(p.tolist()) == list(range(n))  # every image once per pass
    assert not torch.equal(passes[0], torch.arange(n))  # shuffled
    assert not torch.equal(passes[0], passes[1]) and not torch.equal(passes[1], passes[2])

    again = data.ResidentLoader(images, labels, bs, "cpu", *IDENTITY, augment=False, seed=3)
    assert torch.equal(torch.cat([y for _, y in again]), passes[0])  # seeded
    other = data.ResidentLoader(images, labels, bs, "cpu", *IDENTITY, augment=False, seed=4)
    assert not torch.equal(torch.cat([y for _, y in other]), passes[0])


def test_resident_loader_incomplete_pass_is_part_of_a_permutation():
    n, bs = 11, 4
    loader = data.ResidentLoader(unique_images(n), torch.arange(n), bs, "cpu", *IDENTITY,
                                 augment=False)
    seen = [torch.cat([y for _, y in loader]).tolist() for _ in range(5)]
    for s in seen:
        assert len(s) == 8 and len(set(s)) == 8 and set(s) <= set(range(n))
    assert len({tuple(s) for s in seen}) > 1


def test_resident_loader_without_augmentation_returns_the_images():
    n, bs = 9, 3
    images = unique_images(n, c=3, size=4)
    loader = data.ResidentLoader(images, torch.arange(n), bs, "cpu", (0.0, 0.0, 0.0),
                                 (1 / 255,) * 3, augment=False)
    for x, y in loader:
        assert torch.equal(as_uint8(x), images[y])


def test_resident_loader_normalises_per_channel():
    n, bs = 6, 2
    images = unique_images(n, c=3, size=4)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    loader = data.ResidentLoader(images, torch.arange(n), bs, "cpu", mean, std, augment=False)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    for x, y in loader:
        expected = (images[y].float() / 255 - m) / s
        torch.testing.assert_close(x, expected)
    # and the same as the DataLoader path's eval transform
    x, y = next(iter(loader))
    torch.testing.assert_close(x, torch.stack([data.eval_transform(mean, std)(images[i])
                                               for i in y]))


def crop_of(out: torch.Tensor, source: torch.Tensor, p: int) -> tuple[int, int, bool] | None:
    """The (dy, dx, flipped) that cuts `out` from the zero-padded `source`, or None."""
    _, h, w = source.shape
    padded = F.pad(source, (p, p, p, p))
    for dy, dx, flip in itertools.product(range(2 * p + 1), range(2 * p + 1), (False, True)):
        crop = padded[:, dy:dy + h, dx:dx + w]
        if torch.equal(crop.flip(2) if flip else crop, out):
            return dy, dx, flip
    return None


def test_resident_loader_augmentation_is_padded_crop_and_flip():
    n, bs, p = 16, 4, 2
    images = unique_images(n, c=2, size=5)
    loader = data.ResidentLoader(images, torch.arange(n), bs, "cpu", (0.0, 0.0), (1 / 255, 1 / 255),
                                 padding=p, seed=1)
    found = []
    for _ in range(4):
        labels = []
        for x, y in loader:
            assert x.shape == (bs, 2, 5, 5)
            labels += y.tolist()
            for out, i in zip(as_uint8(x), y.tolist(), strict=True):
                how = crop_of(out, images[i], p)
                assert how is not None, f"output for image {i} is no crop/flip of it"
                found.append(how)
        assert sorted(labels) == list(range(n))
    # the augmentation does something, and covers both flips and more than one shift
    assert {f for _, _, f in found} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in found}) > 5
    assert any((dy, dx) != (p, p) for dy, dx, _ in found)


def test_resident_loader_augmentation_draws_per_image():
    """One batch holds different shifts: the crop is drawn per image, not once per batch."""
    n, p = 32, 4
    images = unique_images(n, c=1, size=6)
    loader = data.ResidentLoader(images, torch.arange(n), n, "cpu", (0.0,), (1 / 255,), padding=p)
    x, y = next(iter(loader))
    shifts = {crop_of(out, images[i], p) for out, i in zip(as_uint8(x), y.tolist(), strict=True)}
    assert None not in shifts
    assert len(shifts) > 3


def test_synthetic_epoch_images_do_not_depend_on_the_threads_that_drew_them(monkeypatch):
    n = 2 * data.SYNTHETIC_CHUNK + 5  # three chunks, the last one short
    data.synthetic_uint8.cache_clear()
    monkeypatch.setattr(data, "usable_cores", lambda: 1)
    one = data.synthetic_uint8(n, (1, 2, 2), 7, seed=1)
    assert data.synthetic_uint8(n, (1, 2, 2), 7, seed=1) is one  # made once per shape, then reused
    data.synthetic_uint8.cache_clear()
    monkeypatch.setattr(data, "usable_cores", lambda: 3)
    three = data.synthetic_uint8(n, (1, 2, 2), 7, seed=1)
    assert three is not one and torch.equal(three[0], one[0]) and torch.equal(three[1], one[1])
    assert (three[0].shape == (n, 1, 2, 2) and three[0].dtype == torch.uint8
            and int(three[1].max()) < 7)
    assert three[0][-5:].float().std() > 0  # the short last chunk is drawn too, not left empty
    other = data.synthetic_uint8(n, (1, 2, 2), 7, seed=2)
    assert not torch.equal(other[0], three[0])
