"""The conv family's layers: convolutions around a centre point (Conv2d 64->128, 3x3, stride 1),
varied one thing at a time, plus max vs average pooling; each built on its device as a timed
single-layer pass."""

from __future__ import annotations

import torch

from imgbench.core.config import SEED
from imgbench.workloads import steps

# name -> (dims, in, out, kernel, stride, quick spatial size); `full` multiplies the size by
# conv_scale. Padding is "same" (kernel // 2) but for the _p0 ("valid") layer.
LAYERS = {
    "conv2d_k1_64to128": (2, 64, 128, 1, 1, 16),
    "conv2d_k3_64to128": (2, 64, 128, 3, 1, 16),
    "conv2d_k5_64to128": (2, 64, 128, 5, 1, 16),
    "conv2d_k7_64to128": (2, 64, 128, 7, 1, 16),
    "conv2d_k3_3to32": (2, 3, 32, 3, 1, 32),
    "conv2d_k3_256to256": (2, 256, 256, 3, 1, 8),
    "conv2d_k3_64to128_s2": (2, 64, 128, 3, 2, 16),
    "conv2d_k3_64to128_p0": (2, 64, 128, 3, 1, 16),
    "conv1d_k3_64to128": (1, 64, 128, 3, 1, 256),
    "conv3d_k3_64to128": (3, 64, 128, 3, 1, 8),
    "maxpool2d_k2_64": (2, 64, 64, 2, 2, 16),
    "avgpool2d_k2_64": (2, 64, 64, 2, 2, 16),
}
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def build(name: str, scale: int, device: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """The layer on `device` and the shape of one input item (C, *spatial), spatial sizes times
    `scale`."""
    dims, c_in, c_out, k, stride, size = LAYERS[name]
    if "pool" in name:
        layer = (torch.nn.MaxPool2d if name.startswith("max") else torch.nn.AvgPool2d)(k, stride)
    else:
        conv = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[dims - 1]
        layer = conv(c_in, c_out, k, stride=stride, padding=0 if name.endswith("_p0") else k // 2)
    return layer.to(device), (c_in, *[size * scale] * dims)


def unsupported(name: str, layout: str) -> str | None:
    """Why this layer does not run in this layout, or None."""
    if layout == "channels_last" and LAYERS[name][0] != 2:
        return "channels_last applies to 4-D (N, C, H, W) tensors; this layer is not 2-D"
    return None


def workload(name: str, direction: str, layout: str, device: str, batch_size: int,
             scale: int) -> steps.Workload:
    """One seeded pass of the layer (`fwd` or `fwd_bwd`) over a batch on the device, FLOPs counted;
    a pool's forward, which has no FLOPs to count, stores the bytes it moves instead."""
    torch.manual_seed(SEED)
    layer, shape = build(name, scale, device)
    fmt = LAYOUTS[layout]
    x = torch.randn(batch_size, *shape, device=device).contiguous(memory_format=fmt)
    w = steps.layer_pass(layer.to(memory_format=fmt), x, backward=direction == "fwd_bwd")
    w.flops = steps.count_flops(w.fn)
    if not w.flops and direction == "fwd":  # input read once, output (1/4) written once
        w.bytes = x.numel() * x.element_size() * 5 // 4
    w.info = {"input_shape": list(x.shape), **w.info}
    return w
