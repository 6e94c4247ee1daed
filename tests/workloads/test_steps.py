"""The timed units (imgbench.workloads): autocast per precision, optimizers, the training step (its
loss, targets and loss scaling), inference, FLOP counting, single-layer passes and buffer copies."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from imgbench.workloads import models, steps


def linear(i: int = 16, o: int = 8) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(i, o)


class Recorder(nn.Linear):
    """A Linear that keeps the tensor it was called on, to look at its gradient afterwards."""

    def forward(self, x):
        self.seen = x
        return super().forward(x)


# --- autocast, optimizers -------------------------------------------------------------------------

@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32),
                                                  ("tf32", torch.float32)])
def test_autocast_output_dtype(precision, dtype):
    layer, x = linear(), torch.randn(4, 16)
    with steps.autocast(precision, "cpu"):
        out = layer(x)
        assert torch.is_autocast_enabled("cpu") == (precision == "bf16")
    assert out.dtype == dtype
    assert layer.weight.dtype == torch.float32  # weights are never cast in place
    assert not torch.is_autocast_enabled("cpu")


def test_make_optimizer():
    params = list(linear().parameters())
    adam, sgd = steps.make_optimizer("adam", params), steps.make_optimizer("sgd", params)
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["lr"] == 1e-3
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["lr"] == 0.05
    assert sgd.defaults["momentum"] == 0.9 and sgd.defaults["nesterov"]
    assert steps.make_optimizer("sgd", params, lr=0.5).defaults["lr"] == 0.5


@pytest.mark.parametrize("bad", ["rmsprop", "Adam", ""])
def test_make_optimizer_unknown_names_it(bad):
    with pytest.raises(ValueError) as e:
        steps.make_optimizer(bad, [nn.Parameter(torch.zeros(1))])
    msg = str(e.value)
    assert repr(bad) in msg
    assert "adam" in msg and "sgd" in msg


def test_train_step_unknown_optimizer_raises():
    with pytest.raises(ValueError, match="'lbfgs'"):
        steps.train_step(linear(), torch.randn(2, 16), torch.randint(0, 8, (2,)), optimizer="lbfgs")


def test_explicit_learning_rate_zero_is_kept():
    params = [torch.nn.Parameter(torch.ones(2))]
    assert steps.make_optimizer("sgd", params, lr=0.0).param_groups[0]["lr"] == 0.0


# --- Trainer / train_step -------------------------------------------------------------------------

@pytest.mark.parametrize(("precision", "scaled"), [("fp16", True), ("fp32", False), ("bf16", False),
                                                   ("tf32", False)])
def test_trainer_scales_loss_only_for_fp16(precision, scaled):
    trainer = steps.Trainer(linear(), "sgd", precision, "cpu")
    assert trainer.scaler.is_enabled() is scaled
    assert trainer.precision == precision and isinstance(trainer.opt, torch.optim.SGD)


def test_trainer_params_override():
    model = nn.Sequential(linear(16, 8), linear(8, 3))
    trainer = steps.Trainer(model, "adam", params=model[1].parameters())
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
    w = steps.train_step(model, x, y, "adam", precision)
    assert model.training
    assert w.images == 6 and w.info == {"mode": "train", "optimizer": "adam"}
    loss = w.fn()
    assert loss.ndim == 0 and math.isfinite(loss.item())
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    losses = [w.fn().item() for _ in range(20)]
    assert losses[-1] < loss.item()  # it does optimise


# --- FLOPs and forward ----------------------------------------------------------------------------

def test_count_flops_linear():
    layer, x = linear(16, 8), torch.randn(4, 16)
    assert steps.count_flops(lambda: layer(x)) == 2 * 4 * 16 * 8
    # forward and backward, input gradient included: three matmuls of the same size
    xg = x.clone().requires_grad_(True)
    assert steps.count_flops(lambda: layer(xg).sum().backward()) == 3 * 2 * 4 * 16 * 8
    assert steps.count_flops(lambda: torch.relu(x)) == 0  # elementwise ops are not counted


def test_forward_is_eval_without_grad():
    model = nn.Sequential(linear(16, 8), nn.Dropout(0.5))
    x = torch.randn(4, 16)
    w = steps.forward(model, x)
    assert not model.training
    assert w.images == 4 and w.info == {"mode": "eval", "grad": False}
    out = w.fn()
    assert not out.requires_grad and out.grad_fn is None
    assert torch.is_grad_enabled(), "no_grad must not leak out of the call"
    assert torch.equal(out, w.fn())  # dropout off
    assert steps.count_flops(w.fn) == 2 * 4 * 16 * 8
    assert w.fn().dtype == torch.float32
    assert steps.forward(model, x, "bf16").fn().dtype == torch.bfloat16


# --- layer_pass -----------------------------------------------------------------------------------

def test_layer_pass_forward_only():
    torch.manual_seed(0)
    layer, x = Recorder(16, 8), torch.randn(4, 16)
    w = steps.layer_pass(layer, x, backward=False)
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
    w = steps.layer_pass(layer, x, backward=True)
    assert w.info == {"pass": "fwd_bwd"} and w.images == 4
    out = w.fn()
    assert out.shape == (4, 8)
    assert layer.weight.grad is not None and layer.weight.grad.shape == (8, 16)
    assert layer.seen.grad is not None and layer.seen.grad.shape == x.shape
    assert layer.seen.grad.abs().sum() > 0 and layer.weight.grad.abs().sum() > 0
    assert torch.equal(layer.seen.detach(), x)  # same values, but a leaf of its own:
    assert x.grad is None and not x.requires_grad  # the caller's tensor is left alone
    assert steps.count_flops(w.fn) == 3 * 2 * 4 * 16 * 8  # forward, input grad, weight grad


def test_layer_pass_shapes_output_gradient_once():
    layer, x = Recorder(16, 8), torch.randn(4, 16)
    w = steps.layer_pass(layer, x, backward=True)  # one call already made, outside any timing
    first = layer.seen.grad.clone()
    w.fn()
    # the same output gradient every call, and gradients written afresh as a real step does, not
    # accumulated
    torch.testing.assert_close(layer.seen.grad, first)
    assert layer.weight.grad is not None


# --- copy -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("dtype", "non_blocking"), [(torch.float32, False), (torch.float16, True),
                                                     (torch.uint8, False)])
def test_copy_into_buffer(dtype, non_blocking):
    src = (torch.rand(3, 5, 7) * 100).to(dtype)
    dst = torch.zeros_like(src)
    ptr = dst.data_ptr()
    w = steps.copy(src, dst, non_blocking)
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
    assert steps.make_optimizer(name, params, fused=True).defaults["fused"] is True
    assert not steps.make_optimizer(name, params).defaults.get("fused")


# --- on registered models ----------------------------------------------------------------------

def _batch(batch: int = 8, classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, 32, 32, generator=g),
            torch.randint(0, classes, (batch,), generator=g))


def _seeded(name: str = "kerascnn", seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return models.build(name, **kw)


def test_forward_does_not_touch_batchnorm_statistics():
    model = _seeded("resnet18", num_classes=10, image_size=32)
    x, _ = _batch(4)
    before = model.bn1.running_mean.clone()
    steps.forward(model, x).fn()
    assert torch.equal(model.bn1.running_mean, before)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_train_step_learns_a_fixed_batch(optimizer):
    model = _seeded()
    x, y = _batch()
    w = steps.train_step(model, x, y, optimizer=optimizer)
    losses = [w.fn().item() for _ in range(8)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


def test_train_step_loss_is_cross_entropy_of_the_logits():
    model = _seeded()
    x, y = _batch()
    with torch.no_grad():
        model.train()
        expected = nn.functional.cross_entropy(model(x), y)
    loss = steps.train_step(model, x, y).fn()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_index_and_one_hot_targets_give_the_same_loss(optimizer):
    x, y = _batch()
    one_hot = nn.functional.one_hot(y, 10).float()
    a, b = _seeded(seed=3), _seeded(seed=3)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    wa = steps.train_step(a, x, y, optimizer=optimizer)
    wb = steps.train_step(b, x, one_hot, optimizer=optimizer)
    for _ in range(2):  # the first loss, then the one after an identical step
        la, lb = wa.fn().item(), wb.fn().item()
        assert la == pytest.approx(lb, rel=1e-5, abs=1e-6)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-5)
