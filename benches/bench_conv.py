"""Single layers: convolutions around a centre point (Conv2d 64->128, 3x3, stride 1), varying one thing
at a time -- kernel size, channels, stride, dimensionality -- plus max vs average pooling; forward and
forward+backward, NCHW and channels_last. FLOPs per call from torch's flop counter."""

import pytest
import torch

from imgbench import workloads

# name -> (dims, in, out, kernel, stride, quick spatial size); `full` multiplies the size by conv_scale.
# Padding is "same" (kernel // 2) but for the _p0 ("valid") layer.
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


def build(name: str, scale: int, device: str):
    dims, c_in, c_out, k, stride, size = LAYERS[name]
    if "pool" in name:
        layer = (torch.nn.MaxPool2d if name.startswith("max") else torch.nn.AvgPool2d)(k, stride)
    else:
        conv = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[dims - 1]
        layer = conv(c_in, c_out, k, stride=stride, padding=0 if name.endswith("_p0") else k // 2)
    return layer.to(device), (c_in, *[size * scale] * dims)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("direction", ["fwd", "fwd_bwd"])
@pytest.mark.parametrize("layer", list(LAYERS))
def test_conv(layer, direction, layout, device, batch_size, settings, measure):
    layer_module, shape = build(layer, settings.profile.conv_scale, device)
    if layout == "channels_last" and len(shape) != 3:
        pytest.skip("channels_last applies to 4-D (N, C, H, W) tensors; this layer is not 2-D")
    torch.manual_seed(0)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    layer_module = layer_module.to(memory_format=fmt)
    x = torch.randn(batch_size, *shape, device=device).contiguous(memory_format=fmt)
    w = workloads.layer_pass(layer_module, x, backward=direction == "fwd_bwd")
    w.flops = workloads.count_flops(w.fn)
    if not w.flops and direction == "fwd":  # a pool's forward: input read once, output (1/4) written once
        w.bytes = x.numel() * x.element_size() * 5 // 4
    measure(w, {"input_shape": list(x.shape)})
