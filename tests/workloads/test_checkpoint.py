"""Checkpoints (imgbench.checkpoint): a resumed run continues bit for bit, saves are atomic, loads
run no pickled code, and save reports the file's size; the checkpoint family's workload."""

from __future__ import annotations

import pickle

import pytest
import torch

from imgbench.core import atomic, config
from imgbench.workloads import checkpoint, models, steps

STEPS = 6
SAVE_AFTER = 2  # steps 0..2 run before the save, 3..5 after the restore
BATCH, SIZE = 4, 12


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(123)
    return [(torch.randn(BATCH, 3, SIZE, SIZE, generator=g),
             torch.randint(0, 10, (BATCH,), generator=g))
            for _ in range(STEPS)]


def fresh(seed: int, optimizer: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = models.build("kerascnn", num_classes=10, image_size=SIZE)
    return model, steps.make_optimizer(optimizer, model.parameters())


def step(model, opt, x, y) -> float:
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resumed_run_continues_with_identical_losses(tmp_path, optimizer):
    data = batches()
    path = tmp_path / "ckpt.pt"
    model, opt = fresh(0, optimizer)
    losses = []
    for i, (x, y) in enumerate(data):
        losses.append(step(model, opt, x, y))
        if i == SAVE_AFTER:
            checkpoint.save(path, model, opt, epoch=SAVE_AFTER + 1)
    final = {k: v.clone() for k, v in model.state_dict().items()}

    resumed, resumed_opt = fresh(1, optimizer)  # different weights until the load
    assert not torch.equal(resumed[0].weight, final["0.weight"])
    epoch = checkpoint.load(path, resumed, resumed_opt, "cpu")
    assert epoch == SAVE_AFTER + 1
    assert isinstance(epoch, int)
    # the optimizer state came back too (Adam's moments, SGD's momentum buffers)
    assert len(resumed_opt.state) == len(list(resumed.parameters()))
    resumed_losses = [step(resumed, resumed_opt, x, y) for x, y in data[SAVE_AFTER + 1:]]

    assert resumed_losses == losses[SAVE_AFTER + 1:]
    for k, v in resumed.state_dict().items():
        assert torch.equal(v, final[k]), k


def test_resume_without_optimizer_state_would_differ(tmp_path):
    """The identity above rests on the optimizer state: weights alone with a fresh Adam diverge."""
    data = batches()
    model, opt = fresh(0, "adam")
    losses = []
    for i, (x, y) in enumerate(data):
        losses.append(step(model, opt, x, y))
        if i == SAVE_AFTER:
            checkpoint.save(tmp_path / "c.pt", model, opt, SAVE_AFTER + 1)
    resumed, resumed_opt = fresh(1, "adam")
    checkpoint.load(tmp_path / "c.pt", resumed, resumed_opt, "cpu")
    fresh_opt = steps.make_optimizer("adam", resumed.parameters())  # moments thrown away
    later = [step(resumed, fresh_opt, x, y) for x, y in data[SAVE_AFTER + 1:]]
    assert later[0] == losses[SAVE_AFTER + 1]  # same weights: the first loss still matches
    assert later[1:] != losses[SAVE_AFTER + 2:]


def test_save_returns_file_size(tmp_path):
    model, opt = fresh(0, "adam")
    path = tmp_path / "ckpt.pt"
    size = checkpoint.save(path, model, opt, 0)
    assert isinstance(size, int)
    assert size == path.stat().st_size
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    assert size > params  # at least the weights are in it
    step(model, opt, *batches()[0])  # Adam now holds two moments per weight
    assert checkpoint.save(path, model, opt, 1) == path.stat().st_size > size + 2 * params * 0.9
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch, error):
    model, opt = fresh(0, "sgd")
    path = tmp_path / "ckpt.pt"
    checkpoint.save(path, model, opt, 1)
    good = path.read_bytes()

    calls, during = [], []

    def broken_save(obj, f, *args, **kwargs):
        calls.append(obj)
        f.write(b"half a checkpoint" * 100)
        f.flush()
        during.extend(sorted(p.name for p in tmp_path.iterdir()))
        raise error

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    step(model, opt, *batches()[0])
    with pytest.raises(type(error)):
        checkpoint.save(path, model, opt, 2)
    assert calls and calls[0]["epoch"] == 2  # the failure did happen mid-write
    # ... into a temporary file beside the checkpoint (same file system: the rename is atomic)
    assert len(during) == 2 and during[1] == "ckpt.pt" and during[0].startswith(".ckpt.pt.")
    assert path.stat().st_size == len(good)
    assert path.read_bytes() == good
    # no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]

    monkeypatch.undo()
    resumed, resumed_opt = fresh(1, "sgd")
    assert checkpoint.load(path, resumed, resumed_opt, "cpu") == 1


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    def broken_save(obj, f, *args, **kwargs):
        f.write(b"x")
        raise RuntimeError("boom")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    model, opt = fresh(0, "sgd")
    with pytest.raises(RuntimeError, match="boom"):
        checkpoint.save(tmp_path / "ckpt.pt", model, opt, 0)
    assert list(tmp_path.iterdir()) == []


RAN: list[str] = []


def _payload():
    RAN.append("pickled code ran")
    return "pwned"


class Evil:
    def __reduce__(self):
        return _payload, ()


def test_load_refuses_pickled_objects(tmp_path):
    RAN.clear()
    model, opt = fresh(0, "adam")
    path = tmp_path / "evil.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1,
                "evil": Evil()}, path)
    assert torch.load(path, weights_only=False)["evil"] == "pwned"  # the file really carries code
    RAN.clear()

    target, target_opt = fresh(1, "adam")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises((pickle.UnpicklingError, RuntimeError)):
        checkpoint.load(path, target, target_opt, "cpu")
    assert RAN == []
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # untouched


def test_saved_file_has_the_usual_permissions(tmp_path):
    import os

    model = torch.nn.Linear(2, 2)
    opt = steps.make_optimizer("sgd", model.parameters())
    umask = os.umask(0o022)
    try:
        checkpoint.save(tmp_path / "c.pt", model, opt, epoch=0)
    finally:
        os.umask(umask)
    assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o644


def test_save_writes_through_the_one_atomic_writer(tmp_path, monkeypatch):
    used, real = [], atomic.written

    def written(dest):
        used.append(dest)
        return real(dest)

    monkeypatch.setattr(atomic, "written", written)
    model, opt = fresh(0, "sgd")
    checkpoint.save(tmp_path / "sub" / "c.pt", model, opt, 0)
    assert used == [tmp_path / "sub" / "c.pt"] and (tmp_path / "sub" / "c.pt").is_file()


def test_trained_model_has_optimizer_state_to_save():
    net, opt = checkpoint.trained("kerascnn", "cpu", "adam", 16)
    assert len(opt.state) == len(list(net.parameters()))  # Adam's moments for every weight
    again, _ = checkpoint.trained("kerascnn", "cpu", "adam", 16)
    assert all(torch.equal(a, b)
               for a, b in zip(net.parameters(), again.parameters(), strict=True))  # seeded


@pytest.mark.parametrize(("profile", "size"), [("quick", 32), ("full", 64)])
def test_the_checkpoint_case_saves_and_loads_at_the_profile_size(tmp_path, profile, size):
    path = tmp_path / "c.pt"
    save = checkpoint.workload("save", path, "tinyvgg", "cpu", "adam", config.PROFILES[profile])
    # tinyvgg's weights follow its input size
    net, opt = checkpoint.trained("tinyvgg", "cpu", "adam", size)
    assert save.bytes == path.stat().st_size == checkpoint.save(tmp_path / "same.pt", net, opt,
                                                                epoch=1)
    assert {k: save.info[k] for k in ("op", "optimizer", "storage")} == {
        "op": "save", "optimizer": "adam", "storage": "page cache, no fsync"}
    load = checkpoint.workload("load", path, "tinyvgg", "cpu", "adam", config.PROFILES[profile])
    assert load.info["op"] == "load" and load.bytes == save.bytes
    load.fn()
    with pytest.raises(ValueError, match="'copy'"):
        checkpoint.workload("copy", path, "tinyvgg", "cpu", "adam", config.PROFILES[profile])
