"""Datasets and loaders (imgbench.data): synthetic tensors, PIL images, image folders, CIFAR-10 (binary and
python versions) and MNIST read from generated files in tmp_path, and the DataLoader options."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
from PIL import Image
from torchvision import datasets as tvd
from torchvision.transforms import v2

from imgbench import data
from imgbench.data import DatasetError

# --- generators for dataset files (plain helpers, shared by the tests below) --------------------------

CIFAR_BIN_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
CIFAR_PY_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# a pixel placed at a known (channel, row, col) of the first image of the first file
MARK = (1, 3, 30)
MARK_VALUE = 255


def cifar_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n random CIFAR images (uint8, N x 3 x 32 x 32, channel-major) and labels 0-9."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    return images, labels


def mark(images: np.ndarray) -> np.ndarray:
    """Blank the first image but for one pixel at MARK, so a wrong decode order cannot go unseen."""
    images[0] = 0
    images[(0, *MARK)] = MARK_VALUE
    return images


def cifar_bin_record_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    records = np.concatenate([labels.reshape(-1, 1), images.reshape(len(images), -1)], axis=1)
    assert records.shape[1] == 3073
    return records.astype(np.uint8).tobytes()


def write_cifar_bin(root: Path, counts=(3, 2, 4, 1, 2), test_count: int = 3, seed: int = 0,
                    skip: tuple[str, ...] = ()) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write root/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin; returns name -> (images, labels)."""
    folder = root / data.CIFAR_BIN
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, (name, n) in enumerate(zip([*CIFAR_BIN_TRAIN, "test_batch.bin"], [*counts, test_count],
                                      strict=True)):
        images, labels = cifar_arrays(n, seed * 100 + i)
        if i == 0:
            mark(images)
        written[name] = (images, labels)
        if name not in skip:
            (folder / name).write_bytes(cifar_bin_record_bytes(images, labels))
    return written


def write_cifar_py(root: Path, counts=(2, 3, 1, 2, 2), test_count: int = 3, seed: int = 0,
                   skip: tuple[str, ...] = ()) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write root/cifar-10-batches-py/ pickles in the official layout (what torchvision reads)."""
    folder = root / data.CIFAR_PY
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, (name, n) in enumerate(zip([*CIFAR_PY_TRAIN, "test_batch"], [*counts, test_count], strict=True)):
        images, labels = cifar_arrays(n, seed * 100 + 50 + i)
        if i == 0:
            mark(images)
        written[name] = (images, labels)
        entry = {"batch_label": f"batch {i}", "labels": [int(v) for v in labels],
                 "data": images.reshape(n, 3072), "filenames": [f"img_{i}_{j}.png" for j in range(n)]}
        if name not in skip:
            with open(folder / name, "wb") as f:
                pickle.dump(entry, f)
    if "batches.meta" not in skip:
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": 10, "num_vis": 3072}, f)
    return written


def stack(written: dict, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([written[n][0] for n in names]),
            np.concatenate([written[n][1] for n in names]).astype(np.int64))


def idx_images(images: np.ndarray) -> bytes:
    n, h, w = images.shape
    return struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def write_mnist(root: Path, n_train: int = 5, n_test: int = 3, seed: int = 0, skip: tuple[str, ...] = ()
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.

    Returns split ("train"/"t10k") -> (images N x 28 x 28, labels)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        if split == "train":
            images[0] = 0
            images[0, 4, 20] = 200  # row 4, col 20
        written[split] = (images, labels)
        files = {f"{split}-images-idx3-ubyte": idx_images(images),
                 f"{split}-labels-idx1-ubyte": idx_labels(labels)}
        for name, content in files.items():
            if name not in skip:
                (raw / name).write_bytes(content)
    return written


def write_png_folder(root: Path, per_class: dict[str, int], size: int = 8, seed: int = 0
                     ) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    written = {}
    for cls, n in per_class.items():
        (root / cls).mkdir(parents=True)
        written[cls] = []
        for j in range(n):
            pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{j}.png")
            written[cls].append(pixels)
    return written


def normalized(images_u8: torch.Tensor, mean, std) -> torch.Tensor:
    x = images_u8.float() / 255
    return (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


def patch_cifar_checksums(monkeypatch):
    """Accept generated CIFAR pickles: the per-batch MD5 check and the batches.meta one in _load_meta."""
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)


# --- synthetic ----------------------------------------------------------------------------------------


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


# --- PIL images and transforms ---------------------------------------------------------------------


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
    plain = tvd.FakeData(size=3, image_size=(3, 16, 16), num_classes=10, random_offset=4 * 1_000_003)
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
    assert list(data.train_transform(28, (0.5,), (0.5,), padding=2).transforms[1].padding) == [2, 2, 2, 2]


def test_train_transform_on_uint8_tensor():
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    out = data.train_transform(32, data.CIFAR10_MEAN, data.CIFAR10_STD)(img)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_eval_transform_is_exact_normalisation():
    img = torch.randint(0, 256, (3, 5, 5), dtype=torch.uint8)
    out = data.eval_transform(data.CIFAR10_MEAN, data.CIFAR10_STD)(img)
    assert out.dtype == torch.float32
    assert torch.allclose(out, normalized(img, data.CIFAR10_MEAN, data.CIFAR10_STD), atol=1e-5)


# --- image folders -------------------------------------------------------------------------------------


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
    ds = data.image_folder(str(tmp_path), transform=data.eval_transform(data.CIFAR10_MEAN, data.CIFAR10_STD))
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


# --- CIFAR-10, binary version --------------------------------------------------------------------------


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


# --- CIFAR-10, python version ----------------------------------------------------------------------------


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


# --- MNIST -----------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("name,train", [("train-images-idx3-ubyte", True), ("train-labels-idx1-ubyte", True),
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


# --- real() ------------------------------------------------------------------------------------------------


def test_real_cifar10_is_normalized_float(tmp_path):
    written = write_cifar_bin(tmp_path)
    images, labels = stack(written, CIFAR_BIN_TRAIN)
    ds = data.real("cifar10", tmp_path)
    assert len(ds) == len(labels)
    for i in (0, 5, 11):
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
        expected = normalized(torch.from_numpy(images[i]), data.CIFAR10_MEAN, data.CIFAR10_STD)
        assert torch.allclose(x, expected, atol=1e-5)
        assert int(y) == labels[i]


def test_real_cifar10_augmented_and_test_split(tmp_path):
    write_cifar_bin(tmp_path, test_count=2)
    ds = data.real("cifar10", tmp_path, train=False, augment=True)
    assert len(ds) == 2
    x, _ = ds[0]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32)


def test_real_mnist_is_normalized_float(tmp_path):
    written = write_mnist(tmp_path, n_train=3)
    images, _ = written["train"]
    ds = data.real("mnist", tmp_path)
    x, _ = ds[1]
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28)
    expected = normalized(torch.from_numpy(images[1]).unsqueeze(0), data.MNIST_MEAN, data.MNIST_STD)
    assert torch.allclose(x, expected, atol=1e-5)
    x_aug, _ = data.real("mnist", tmp_path, augment=True)[1]
    assert x_aug.shape == (1, 28, 28) and x_aug.dtype == torch.float32


@pytest.mark.parametrize("name", sorted(data.REAL))
def test_real_without_root_is_dataset_error(name):
    with pytest.raises(DatasetError) as e:
        data.real(name, None)
    assert name in str(e.value)


# --- loader() ---------------------------------------------------------------------------------------------


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
    with pytest.raises(ValueError, match="persistent_workers and prefetch_factor need num_workers > 0"):
        data.loader(indexed(4), 2, num_workers=0, **kwargs)


def test_loader_with_a_persistent_worker():
    ds = indexed(11)
    dl = data.loader(ds, 3, num_workers=1, pin_memory=False, persistent_workers=True, prefetch_factor=2,
                     seed=3)
    assert dl.num_workers == 1 and dl.persistent_workers and dl.prefetch_factor == 2
    batches = list(dl)
    assert len(batches) == 4
    assert [len(y) for _, y in batches] == [3, 3, 3, 2]
    # the same seeded order as in the main process
    assert [int(v) for _, y in batches for v in y] == order(data.loader(ds, 3, seed=3))


def test_fake_pil_seeds_share_no_images():
    a, b = data.fake_pil(4, image_size=8, seed=0, augment=False), data.fake_pil(4, image_size=8, seed=1, augment=False)
    assert not any(torch.equal(a[i][0], b[j][0]) for i in range(4) for j in range(4))


def test_real_rejects_an_unknown_dataset_by_name():
    with pytest.raises(data.DatasetError, match=r"unknown dataset 'imagenet' \(valid: cifar10, mnist\)"):
        data.real("imagenet", "/tmp")


def test_unreadable_cifar_file_is_a_dataset_error(tmp_path, monkeypatch):
    write_cifar_bin(tmp_path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(data.np, "fromfile", refuse)
    with pytest.raises(data.DatasetError, match=r"cifar10: cannot read '.*data_batch_1.bin': Permission denied"):
        data.cifar10(tmp_path)


def test_encoded_images_decode_back_to_the_pixels():
    ds = data.EncodedImages(4, image_size=8, seed=3)
    images, labels = data.synthetic_uint8(4, (3, 8, 8), seed=3)
    assert len(ds) == 4 and all(isinstance(b, bytes) and b[:4] == b"\x89PNG" for b in ds.encoded)
    for i in range(4):
        img, label = ds[i]
        assert torch.equal(v2.functional.pil_to_tensor(img), images[i]) and label == labels[i]
