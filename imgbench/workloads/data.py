"""Datasets and loaders: synthetic tensors, PIL images with augmentation, CIFAR-10 and MNIST from a
local folder (never downloaded), image folders, and the DataLoader options that matter for speed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from imgbench.core.errors import UserError
from imgbench.hw.devices import usable_cores

if TYPE_CHECKING:  # imported where used: torchvision takes as long to import as torch itself
    from torchvision import datasets as tvd
    from torchvision.transforms import v2

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR_RECORD = 1 + 3 * 32 * 32  # binary version: label byte, then channel-major pixels
CIFAR_BIN = "cifar-10-batches-bin"
CIFAR_PY = "cifar-10-batches-py"
MNIST_RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class DatasetError(UserError):
    """A data root that lacks the dataset, or holds corrupt files; the message names them."""


def synthetic_batch(batch_size: int, shape: tuple[int, int, int], num_classes: int, seed: int = 0,
                    device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded normal images and uniform labels (never all zeros: zeros can run faster than data)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch_size, *shape), generator=g)
    y = torch.randint(0, num_classes, (batch_size,), generator=g)
    return x.to(device), y.to(device)


# images per seeded generator: the values do not depend on how many threads drew them
SYNTHETIC_CHUNK = 4096


# an epoch's images, made once per shape and reused by every case of that shape
@lru_cache(maxsize=1)
def synthetic_uint8(n: int, shape: tuple[int, int, int], num_classes: int = 10,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded uint8 images (N, C, H, W) and labels: what a decoded dataset holds in memory. Drawn in
    chunks on every usable core (a full-profile 224-px epoch is 1.5 GB); cached, so never modify
    them."""
    images, labels = torch.empty((n, *shape), dtype=torch.uint8), torch.empty(n, dtype=torch.int64)

    def draw(chunk: int):
        lo, hi = chunk * SYNTHETIC_CHUNK, min(n, (chunk + 1) * SYNTHETIC_CHUNK)
        g = torch.Generator().manual_seed(seed * 1_000_003 + chunk)
        torch.randint(0, 256, (hi - lo, *shape), generator=g, dtype=torch.uint8, out=images[lo:hi])
        torch.randint(0, num_classes, (hi - lo,), generator=g, out=labels[lo:hi])

    # torch drops the GIL while it draws
    with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
        list(pool.map(draw, range(-(-n // SYNTHETIC_CHUNK))))
    return images, labels


class SyntheticImages(Dataset):
    """An in-memory dataset of seeded random images, for loaders without any files."""

    def __init__(self, size: int, shape: tuple[int, int, int], num_classes: int = 10,
                 seed: int = 0):
        self.images, self.labels = synthetic_batch(size, shape, num_classes, seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


class TensorImages(Dataset):
    """uint8 CHW images held in memory, with an optional transform (every real dataset lands here:
    workloads.datasets); `mean` and `std`, where known, the per-channel normalisation it uses."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None, mean=None,
                 std=None):
        self.images, self.labels, self.transform = images, labels, transform
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i]
        return (self.transform(x) if self.transform else x), self.labels[i]


def train_transform(image_size: int, mean, std, padding: int = 4) -> v2.Compose:
    """The classic CIFAR-10 augmentation: random crop with padding, horizontal flip, float,
    normalize."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.ToImage(),
        v2.RandomCrop(image_size, padding=padding),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])


def eval_transform(mean, std) -> v2.Compose:
    from torchvision.transforms import v2

    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(mean, std)])


def fake_pil(size: int, image_size: int = 32, num_classes: int = 10, seed: int = 0,
             augment: bool = True):
    """PIL images decoded and augmented per item: the CPU cost of a real image pipeline, no
    files."""
    from torchvision import datasets as tvd

    t = train_transform(image_size, CIFAR10_MEAN, CIFAR10_STD) if augment else eval_transform(
        CIFAR10_MEAN, CIFAR10_STD)
    # FakeData seeds item i with random_offset + i: space the seeds so two seeds share no images.
    return tvd.FakeData(size=size, image_size=(3, image_size, image_size), num_classes=num_classes,
                        transform=t, random_offset=seed * 1_000_003)


class EncodedImages(Dataset):
    """Images held as compressed PNG bytes, decoded with PIL on every access: the per-item CPU cost
    of reading an image dataset (decode, then augment), without touching the disk."""

    def __init__(self, size: int, image_size: int = 32, num_classes: int = 10, seed: int = 0,
                 transform=None):
        from io import BytesIO

        from PIL import Image

        images, self.labels = synthetic_uint8(size, (3, image_size, image_size), num_classes, seed)
        self.encoded = []
        for img in images:
            buf = BytesIO()
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="PNG")
            self.encoded.append(buf.getvalue())
        self.transform = transform

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int):
        from io import BytesIO

        from PIL import Image

        with Image.open(BytesIO(self.encoded[i])) as img:
            img = img.convert("RGB")
        return (self.transform(img) if self.transform else img), self.labels[i]


def image_folder(root: str | Path, transform=None) -> tvd.ImageFolder:
    """Images in class sub-folders (root/cat/1.png ...), decoded with PIL."""
    from torchvision import datasets as tvd

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder {str(root)!r} does not exist "
                           "(expected root/<class>/<image>)")
    try:
        return tvd.ImageFolder(str(root), transform=transform)
    except FileNotFoundError as e:
        raise DatasetError(f"image folder {str(root)!r}: {e}") from None


def _missing(root: Path, names) -> list[str]:
    return [n for n in names if not (root / n).is_file()]


def cifar10(root: str | Path, train: bool = True, transform=None) -> TensorImages:
    """CIFAR-10 from `root`, binary version preferred (parsed with numpy, no pickle), else the
    python one."""
    root = Path(root)
    bin_files = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
    if (root / CIFAR_BIN).is_dir():
        missing = _missing(root / CIFAR_BIN, bin_files)
        if missing:
            raise DatasetError(f"cifar10: missing under {str(root / CIFAR_BIN)!r}: "
                               f"{', '.join(missing)}")
        images, labels = zip(*(_read_cifar_bin(root / CIFAR_BIN / n) for n in bin_files),
                             strict=True)
        return TensorImages(torch.cat(images), torch.cat(labels), transform)
    if (root / CIFAR_PY).is_dir():
        return _cifar10_python(root, train, transform)
    raise DatasetError(f"cifar10: no dataset under {str(root)!r} (expected {CIFAR_BIN}/ with "
                       f"{', '.join(bin_files)}, or {CIFAR_PY}/)")


def _read_cifar_bin(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DatasetError(f"cifar10: cannot read {str(path)!r}: {e.strerror or e}") from None
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise DatasetError(f"cifar10: corrupt file {str(path)!r}: {raw.size} bytes is not a whole "
                           f"number of {CIFAR_RECORD}-byte records")
    records = raw.reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DatasetError(f"cifar10: corrupt file {str(path)!r}: label {labels.max()} outside 0-9")
    images = records[:, 1:].reshape(-1, 3, 32, 32)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels)


def _cifar10_python(root: Path, train: bool, transform) -> TensorImages:
    from torchvision import datasets as tvd

    # torchvision checks every file's MD5 against the official release before unpickling it,
    # which is also what keeps a stranger's pickle from running code here.
    names = ([f"data_batch_{i}" for i in range(1, 6)]
             + ["test_batch", "batches.meta"])  # torchvision checks all
    missing = _missing(root / CIFAR_PY, names)
    if missing:
        raise DatasetError(f"cifar10: missing under {str(root / CIFAR_PY)!r}: {', '.join(missing)}")
    try:
        ds = tvd.CIFAR10(str(root), train=train, download=False)
    except OSError as e:
        raise DatasetError(f"cifar10: cannot read the files under {str(root / CIFAR_PY)!r}: "
                           f"{e.strerror or e}") from None
    except RuntimeError:
        raise DatasetError(f"cifar10: files under {str(root / CIFAR_PY)!r} fail torchvision's "
                           "checksum (corrupt or not the official release)") from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return TensorImages(images, torch.tensor(ds.targets, dtype=torch.int64), transform)


def mnist(root: str | Path, train: bool = True, transform=None) -> TensorImages:
    """MNIST from `root`/MNIST/raw (the idx files torchvision reads), never downloaded."""
    from torchvision import datasets as tvd

    raw = Path(root) / "MNIST" / "raw"
    missing = _missing(raw, MNIST_RAW)  # torchvision wants both splits whichever it reads
    if missing:
        raise DatasetError(f"mnist: missing under {str(raw)!r}: {', '.join(missing)}")
    try:
        ds = tvd.MNIST(str(root), train=train, download=False)
    except OSError as e:
        raise DatasetError(f"mnist: cannot read the idx files under {str(raw)!r}: "
                           f"{e.strerror or e}") from None
    except (RuntimeError, ValueError, IndexError, AssertionError, KeyError, TypeError) as e:
        # torchvision's idx reader signals a bad header with any of these
        raise DatasetError(f"mnist: corrupt idx files under {str(raw)!r}: "
                           f"{type(e).__name__}: {e}") from None
    if len(ds.data) != len(ds.targets):
        raise DatasetError(f"mnist: corrupt idx files under {str(raw)!r}: {len(ds.data)} images "
                           f"but {len(ds.targets)} labels")
    return TensorImages(ds.data.unsqueeze(1).contiguous(), ds.targets.to(torch.int64), transform)


def loader(dataset: Dataset, batch_size: int, num_workers: int = 0, pin_memory: bool = False,
           persistent_workers: bool = False, prefetch_factor: int | None = None,
           drop_last: bool = False, shuffle: bool = True, seed: int = 0) -> DataLoader:
    """A DataLoader with the options that decide input speed; seeded shuffling."""
    if num_workers == 0 and (persistent_workers or prefetch_factor is not None):
        raise ValueError("persistent_workers and prefetch_factor need num_workers > 0")
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=persistent_workers,
                      prefetch_factor=prefetch_factor, drop_last=drop_last,
                      generator=torch.Generator().manual_seed(seed))


class ResidentLoader:
    """The whole dataset on the device as uint8; crop, flip and normalise run there, batched.

    No worker processes, no host round trip, no per-step host synchronisation: the way the public
    CIFAR-10 speed records feed a GPU. Each pass reshuffles on the device; incomplete batches are
    dropped, as in the DataLoader path here.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device, mean,
                 std, augment: bool = True, padding: int = 4, seed: int = 0):
        self.device = torch.device(device)
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        self.batch_size, self.augment, self.padding = batch_size, augment, padding
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        # Index grids of the batched crop, made once: every batch has the same shape.
        n, (c, h, w) = batch_size, images.shape[1:]
        arange = partial(torch.arange, device=self.device)
        self._grid = (arange(n).view(n, 1, 1, 1), arange(c).view(1, c, 1, 1), arange(h), arange(w))

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.labels), device=self.device, generator=self.gen)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[idx]
            if self.augment:
                x = self._crop_flip(x)
            yield (x.float().div_(255) - self.mean) / self.std, self.labels[idx]

    def _crop_flip(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        p = self.padding
        batch, channel, row, col = self._grid
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n, 1), device=self.device, generator=self.gen)
        dx = torch.randint(0, 2 * p + 1, (n, 1), device=self.device, generator=self.gen)
        x = padded[batch, channel, (dy + row).view(n, 1, h, 1), (dx + col).view(n, 1, 1, w)]
        flip = torch.rand(n, device=self.device, generator=self.gen) < 0.5
        return torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
