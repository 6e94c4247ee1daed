"""The timed units (imgbench.workloads): autocast per precision, the training step and its loss scaling,
FLOP counting, single-layer passes and buffer copies."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from imgbench import workloads


def linear(i: int = 16, o: int = 8) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(i, o)


class Recorder(nn.Linear):
    """A Linear that keeps the tensor it was called on, to look at its gradient afterwards."""

    def forward(self, x):
        self.seen = x
        return super().forward(x)


# --- autocast, optimizers ----------------------------------------------------------------------------

@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32),
                                                  ("tf32", torch.float32)])
def test_autocast_output_dtype(precision, dtype):
    layer, x = linear(), torch.randn(4, 16)
    with workloads.autocast(precision, "cpu"):
        out = layer(x)
        assert torch.is_autocast_enabled("cpu") == (precision == "bf16")
    assert out.dtype == dtype
    assert layer.weight.dtype == torch.float32  # weights are never cast in place
    assert not torch.is_autocast_enabled("cpu")


def test_make_optimizer():
    params = list(linear().parameters())
    adam, sgd = workloads.make_optimizer("adam", params), workloads.make_optimizer("sgd", params)
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["lr"] == 1e-3
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["lr"] == 0.05
    assert sgd.defaults["momentum"] == 0.9 and sgd.defaults["nesterov"]
    assert workloads.make_optimizer("sgd", params, lr=0.5).defaults["lr"] == 0.5
    with pytest.raises(ValueError, match=r"'rmsprop'.*adam, sgd"):
        workloads.make_optimizer("rmsprop", params)


# --- Trainer / train_step ----------------------------------------------------------------------------

@pytest.mark.parametrize(("precision", "scaled"), [("fp16", True), ("fp32", False), ("bf16", False),
                                                   ("tf32", False)])
def test_trainer_scales_loss_only_for_fp16(precision, scaled):
    trainer = workloads.Trainer(linear(), "sgd", precision, "cpu")
    assert trainer.scaler.is_enabled() is scaled
    assert trainer.precision == precision and isinstance(trainer.opt, torch.optim.SGD)


def test_trainer_params_override():
    model = nn.Sequential(linear(16, 8), linear(8, 3))
    trainer = workloads.Trainer(model, "adam", params=model[1].parameters())
    first = model[0].weight.detach().clone()
    trainer.step(torch.randn(4, 16), torch.randint(0, 3, (4,)))
    assert torch.equal(model[0].weight, first)  # not in the optimizer: gradient, but no update
    assert model[0].weight.grad is not None


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_step_changes_parameters(precision):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 5))
    x, y = torch.randn(6, 16), torch.randint(0, 5, (6,))
    before = [p.detach().clone() for p in model.parameters()]
    model.eval()
    w = workloads.train_step(model, x, y, "adam", precision)
    assert model.training
    assert w.images == 6 and w.info == {"mode": "train", "optimizer": "adam"}
    loss = w.fn()
    assert loss.ndim == 0 and math.isfinite(loss.item())
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    losses = [w.fn().item() for _ in range(20)]
    assert losses[-1] < loss.item()  # it does optimise


def test_train_step_takes_soft_targets():
    model = linear(16, 4)
    y = torch.softmax(torch.randn(3, 4), dim=1)
    loss = workloads.train_step(model, torch.randn(3, 16), y).fn()
    assert math.isfinite(loss.item())


# --- FLOPs and forward -------------------------------------------------------------------------------

def test_count_flops_linear():
    layer, x = linear(16, 8), torch.randn(4, 16)
    assert workloads.count_flops(lambda: layer(x)) == 2 * 4 * 16 * 8
    # forward and backward, input gradient included: three matmuls of the same size
    xg = x.clone().requires_grad_(True)
    assert workloads.count_flops(lambda: layer(xg).sum().backward()) == 3 * 2 * 4 * 16 * 8
    assert workloads.count_flops(lambda: torch.relu(x)) == 0  # elementwise ops are not counted


def test_forward_is_eval_without_grad():
    model = nn.Sequential(linear(16, 8), nn.Dropout(0.5))
    x = torch.randn(4, 16)
    w = workloads.forward(model, x)
    assert not model.training
    assert w.images == 4 and w.info == {"mode": "eval", "grad": False}
    out = w.fn()
    assert not out.requires_grad
    assert torch.equal(out, w.fn())  # dropout off
    assert workloads.count_flops(w.fn) == 2 * 4 * 16 * 8
    assert w.fn().dtype == torch.float32
    assert workloads.forward(model, x, "bf16").fn().dtype == torch.bfloat16


# --- layer_pass --------------------------------------------------------------------------------------

def test_layer_pass_forward_only():
    torch.manual_seed(0)
    layer, x = Recorder(16, 8), torch.randn(4, 16)
    w = workloads.layer_pass(layer, x, backward=False)
    assert w.info == {"pass": "fwd"} and w.images == 4
    out = w.fn()
    torch.testing.assert_close(out, x @ layer.weight.T + layer.bias)
    assert not out.requires_grad
    assert layer.seen.grad is None and not layer.seen.requires_grad
    assert layer.weight.grad is None and layer.bias.grad is None
    assert x.grad is None and not x.requires_grad


def test_layer_pass_forward_backward():
    torch.manual_seed(0)
    layer, x = Recorder(16, 8), torch.randn(4, 16)
    w = workloads.layer_pass(layer, x, backward=True)
    assert w.info == {"pass": "fwd_bwd"} and w.images == 4
    out = w.fn()
    assert out.shape == (4, 8)
    assert layer.weight.grad is not None and layer.weight.grad.shape == (8, 16)
    assert layer.seen.grad is not None and layer.seen.grad.shape == x.shape
    assert layer.seen.grad.abs().sum() > 0 and layer.weight.grad.abs().sum() > 0
    assert torch.equal(layer.seen.detach(), x)  # same values, but a leaf of its own:
    assert x.grad is None and not x.requires_grad  # the caller's tensor is left alone
    assert workloads.count_flops(w.fn) == 3 * 2 * 4 * 16 * 8  # forward, input grad, weight grad


def test_layer_pass_shapes_output_gradient_once():
    layer, x = Recorder(16, 8), torch.randn(4, 16)
    w = workloads.layer_pass(layer, x, backward=True)  # one call already made, outside any timing
    first = layer.seen.grad.clone()
    w.fn()
    # the same output gradient every call, and gradients written afresh as a real step does, not accumulated
    torch.testing.assert_close(layer.seen.grad, first)
    assert layer.weight.grad is not None


# --- copy --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("dtype", "non_blocking"), [(torch.float32, False), (torch.float16, True),
                                                     (torch.uint8, False)])
def test_copy_into_buffer(dtype, non_blocking):
    src = (torch.rand(3, 5, 7) * 100).to(dtype)
    dst = torch.zeros_like(src)
    ptr = dst.data_ptr()
    w = workloads.copy(src, dst, non_blocking)
    assert not torch.equal(dst, src)  # nothing copied until called
    w.fn()
    assert torch.equal(dst, src) and dst.data_ptr() == ptr  # into the buffer, no new allocation
    nbytes = 3 * 5 * 7 * torch.tensor([], dtype=dtype).element_size()
    assert w.bytes == nbytes == w.info["bytes"]
    assert w.info["non_blocking"] is non_blocking
    assert w.images == 0 and w.flops == 0


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_fused_optimizers_on_request(name):
    params = [nn.Parameter(torch.ones(3))]
    assert workloads.make_optimizer(name, params, fused=True).defaults["fused"] is True
    assert not workloads.make_optimizer(name, params).defaults.get("fused")
