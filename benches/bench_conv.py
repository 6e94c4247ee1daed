"""Single layers: convolutions around a centre point (Conv2d 64->128, 3x3, stride 1), varying one
thing at a time -- kernel size, channels, stride, dimensionality -- plus max vs average pooling;
forward and forward+backward, NCHW and channels_last. FLOPs per call from torch's flop counter."""

import pytest

from imgbench.workloads import conv


@pytest.mark.gate(layer="conv2d_k3_64to128", direction="fwd_bwd", layout="nchw", batch_size=32)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("direction", ["fwd", "fwd_bwd"])
@pytest.mark.parametrize("layer", list(conv.LAYERS))
def test_conv(layer, direction, layout, device, batch_size, settings, measure):
    if reason := conv.unsupported(layer, layout):
        pytest.skip(reason)
    measure(conv.workload(layer, direction, layout, device, batch_size,
                          settings.profile.conv_scale))
