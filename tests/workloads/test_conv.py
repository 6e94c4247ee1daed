"""The conv family's layers (imgbench.layers): each layer's shape and FLOPs, the layout it runs in,
the bytes a pool moves, and the profile's scale."""

from __future__ import annotations

import pytest
import torch

from imgbench.workloads import conv

CENTRE = "conv2d_k3_64to128"


def test_channels_last_is_for_2d_layers_only():
    assert conv.unsupported(CENTRE, "channels_last") is None
    assert conv.unsupported("maxpool2d_k2_64", "channels_last") is None
    for name in ("conv1d_k3_64to128", "conv3d_k3_64to128"):
        assert "not 2-D" in conv.unsupported(name, "channels_last")
        assert conv.unsupported(name, "nchw") is None


@pytest.mark.parametrize(("name", "out_shape"), [(CENTRE, (2, 128, 16, 16)),
                                                 ("conv2d_k3_64to128_p0", (2, 128, 14, 14)),
                                                 ("conv2d_k3_64to128_s2", (2, 128, 8, 8)),
                                                 ("conv1d_k3_64to128", (2, 128, 256)),
                                                 ("avgpool2d_k2_64", (2, 64, 8, 8))])
def test_layers_vary_one_thing_from_the_centre(name, out_shape):
    assert conv.workload(name, "fwd", "nchw", "cpu", 2, 1).fn().shape == out_shape


def test_a_convolution_counts_its_flops_in_either_direction():
    fwd = conv.workload(CENTRE, "fwd", "nchw", "cpu", 2, 1)
    macs = 2 * 128 * 16 * 16 * 64 * 9  # batch 2, 128 x 16 x 16 outputs, 64 x 3 x 3 each
    assert fwd.flops == 2 * macs and fwd.bytes == 0
    assert fwd.info == {"input_shape": [2, 64, 16, 16], "pass": "fwd"}
    bwd = conv.workload(CENTRE, "fwd_bwd", "nchw", "cpu", 2, 1)
    assert bwd.flops == 3 * 2 * macs  # forward, input gradient, weight gradient


def test_a_pool_forward_stores_the_bytes_it_moves():
    w = conv.workload("maxpool2d_k2_64", "fwd", "nchw", "cpu", 2, 1)
    # input read once, a quarter written
    assert w.flops == 0 and w.bytes == 2 * 64 * 16 * 16 * 4 * 5 // 4
    assert conv.workload("maxpool2d_k2_64", "fwd_bwd", "nchw", "cpu", 2, 1).bytes == 0


def test_channels_last_reaches_the_layer_and_the_scale_the_size():
    w = conv.workload(CENTRE, "fwd", "channels_last", "cpu", 2, 4)
    assert w.info["input_shape"] == [2, 64, 64, 64]
    out = w.fn()
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()


def test_layers_and_inputs_are_seeded():
    a, b = (conv.workload(CENTRE, "fwd", "nchw", "cpu", 2, 1).fn() for _ in range(2))
    assert torch.equal(a, b)
