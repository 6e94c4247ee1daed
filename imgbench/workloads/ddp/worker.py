"""One data-parallel replica, as torchrun starts it (`python -m imgbench.ddp`).

Every rank runs under the suite's conditions (conditions.applied, fp32, as the epoch family's cases)
and builds the same seeded model and data; DistributedDataParallel all-reduces the gradients every
step (NCCL on GPUs, gloo on CPU processes); a DistributedSampler gives each rank its share of the
epoch. After a warm-up epoch, each timed epoch starts at a barrier and ends when the slowest rank
ends. Then every replica's parameters are gathered and compared, and last, one epoch runs under
no_sync (no gradient all-reduce; the replicas drift apart, so it comes after the check): the
synchronised epoch's excess over it is the communication the backward pass did not hide. Rank 0
writes a JSON, with the conditions its epochs ran under."""

from __future__ import annotations

import argparse
import gc
import json
import os
from contextlib import nullcontext
from datetime import timedelta

import torch
import torch.distributed as dist

from imgbench.core import atomic
from imgbench.hw import conditions, devices, timing
from imgbench.workloads import data, models
from imgbench.workloads.steps import Trainer


class DDPError(RuntimeError):
    pass


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def unavailable(device: str) -> str | None:
    """Why this torch cannot run data parallelism on `device`, or None."""
    if not dist.is_available():
        return f"torch.distributed is not available in torch {torch.__version__}"
    backend = backend_for(device)
    if not (dist.is_nccl_available() if backend == "nccl" else dist.is_gloo_available()):
        return (f"the {backend} backend is not available in torch {torch.__version__} "
                f"(needed for {device})")
    return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m imgbench.ddp",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="kerascnn")
    p.add_argument("--device", default="cpu", help="cpu or cuda (one GPU per rank: LOCAL_RANK)")
    p.add_argument("--batch-size", type=int, default=32, help="per replica")
    p.add_argument("--images", type=int, default=512,
                   help="images per epoch, all replicas together")
    p.add_argument("--image-size", type=int, default=None, help="default: the model's")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs, after one warm-up epoch")
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per rank")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800,
                   help="seconds a collective may wait (the case limit)")
    p.add_argument("--out", required=True, help="rank 0 writes the result JSON here")
    p.add_argument("--save-weights", help="rank 0 saves the parameters after the timed epochs here")
    return p


# distinct images per rank; a full-profile ResNet epoch as float32 would take 30 GB a rank
POOL = 4096


def dataset(model: str, images: int, image_size: int | None, seed: int) -> torch.utils.data.Subset:
    """`images` uint8 images drawn in turn from a pool of at most POOL seeded ones."""
    c, size, _ = models.spec(model).input_shape
    size = image_size or size
    pool = min(images, POOL)
    x, y = data.synthetic_uint8(pool, (c, size, size), models.spec(model).num_classes, seed)
    return torch.utils.data.Subset(torch.utils.data.TensorDataset(x, y),
                                   [i % pool for i in range(images)])


def build(model: str, image_size: int | None, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    c, size, _ = models.spec(model).input_shape
    return models.build(model, models.spec(model).num_classes, c, image_size or size)


def sampler(ds, world: int, rank: int, seed: int):
    return torch.utils.data.DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True,
                                               seed=seed, drop_last=True)


def run_epoch(loader, trainer: Trainer, device: torch.device,
              sync_grads: bool = True) -> torch.Tensor:
    loss = torch.zeros((), device=device)
    for x, y in loader:
        # uint8 over the wire (a quarter of float32's bytes), scaled on the device
        x, y = x.to(device, non_blocking=True).float().div_(255), y.to(device, non_blocking=True)
        with nullcontext() if sync_grads else trainer.model.no_sync():
            loss = trainer.step(x, y)
    return loss

def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = (torch.device(f"cuda:{local}") if args.device.startswith("cuda")
              else torch.device("cpu"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # the case limit: a collective waiting on a stuck or lost peer ends by itself
    dist.init_process_group(backend_for(args.device), timeout=timedelta(seconds=args.timeout))
    try:
        # as the epoch family's cases
        with conditions.applied(args.device, "fp32", args.threads) as record:
            result = train(args, device, local)
        if dist.get_rank() == 0:
            with atomic.written(args.out) as tmp:
                tmp.write_text(json.dumps({**result, "conditions": record}))
        # The DDP model and its reducer (kept alive by reference cycles) freed while their process
        # group still lives, and every rank here before any tears its connections down: otherwise a
        # rank could abort at exit ("terminate called without an active exception", seen on the
        # 2-core box in about one launch in five).
        gc.collect()
        dist.barrier()
        return 0
    finally:
        dist.destroy_process_group()


def train(args: argparse.Namespace, device: torch.device, local: int) -> dict:
    """The warm-up, timed, checked and no_sync epochs of this rank; the result rank 0 writes."""
    rank, world = dist.get_rank(), dist.get_world_size()
    ds = dataset(args.model, args.images, args.image_size, args.seed)
    s = sampler(ds, world, rank, args.seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, sampler=s, drop_last=True,
                                         pin_memory=device.type == "cuda")
    if len(loader) == 0:
        raise DDPError(f"batch {args.batch_size} x {world} replicas > {args.images} images per "
                       "epoch: no step")
    net = build(args.model, args.image_size, args.seed).to(device).train()
    ddp = torch.nn.parallel.DistributedDataParallel(
        net, device_ids=[local] if device.type == "cuda" else None)
    trainer = Trainer(ddp, args.optimizer, "fp32", device.type)
    sync = devices.synchronizer(str(device))

    def timed_epoch(epoch: int, sync_grads: bool = True) -> float:
        s.set_epoch(epoch)
        sync()
        dist.barrier()  # every rank idle and here: the clocks start together
        seconds = timing.clocked(lambda: run_epoch(loader, trainer, device, sync_grads), sync)
        took = torch.tensor([seconds], dtype=torch.float64, device=device)
        dist.all_reduce(took, op=dist.ReduceOp.MAX)  # the epoch ends with its slowest rank
        return float(took.item())

    timed_epoch(0)  # warm-up: allocator, DDP buckets, the first all-reduces
    epoch_s = [timed_epoch(e) for e in range(1, 1 + args.epochs)]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    everyone = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(everyone, flat)
    max_diff = max(float((w - everyone[0]).abs().max()) for w in everyone)
    if rank == 0 and args.save_weights:
        with atomic.written(args.save_weights) as tmp:
            torch.save({k: v.detach().cpu() for k, v in net.named_parameters()}, tmp)
    nosync_s = timed_epoch(1 + args.epochs, sync_grads=False)
    steps = len(loader)
    return {"world_size": world, "backend": dist.get_backend(), "device": args.device,
            "model": args.model, "batch_size": args.batch_size, "steps": steps,
            "images_per_epoch": steps * args.batch_size * world,
            "threads_per_rank": args.threads, "epoch_s": epoch_s, "nosync_epoch_s": nosync_s,
            "max_param_diff": max_diff, "replicas_identical": max_diff == 0.0}
