"""Named configuration: the profiles, the benchmark families and the values each axis may take.

Every value is set here once, with its reason. No torch: the light commands (compare, plot, report)
read these names too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Profile:
    name: str
    summary: str
    max_image_size: int | None  # images larger than a model's default are never made; None: the
                                # model's own
    warmup_calls: int           # untimed calls before pytest-benchmark calibrates
    min_rounds: int             # pytest-benchmark's --benchmark-min-rounds unless given on the
                                # command line
    max_time: float             # pytest-benchmark's --benchmark-max-time unless given
    long_rounds: int            # rounds of epoch-long cases (no calibration call)
    epoch_images: int           # images in one epoch of the epoch and ddp families ...
    epoch_bytes: int            # ... at most this many bytes of uint8 images (epoch_size)
    loader_images: int          # images in one pass of the dataloader family
    transfer_images: int        # images in one transfer-learning epoch
    conv_scale: int             # spatial size multiplier of the conv family's layers
    case_timeout_s: float       # a case still running after this long, and after HANG_FACTOR
                                # times its estimate, has hung: it fails, the run goes on


PROFILES = {
    "quick": Profile(
        name="quick",
        summary="images at most 32x32, 2 warm-up calls, >= 5 rounds in ~0.5 s, 512-image epochs; "
                "for CI",
        max_image_size=32,   # a 224-px ResNet epoch is minutes on a 2-core CPU; CI has 90 minutes
                             # for everything
        warmup_calls=2,      # lazy init and allocator growth settle within two calls of these small
                             # cases
        min_rounds=5,        # enough for a median and an interval, few enough for ~300 cases in
                             # minutes
        max_time=0.5,
        long_rounds=3,       # epochs of 512 images: three give a median without doubling the run
        epoch_images=512,    # 4 steps at batch 128: a whole epoch's code path, seconds on a CPU
        epoch_bytes=1_500_000_000,  # never reached at 32 px (1.5 MB)
        loader_images=512,
        transfer_images=256,
        conv_scale=1,
        case_timeout_s=300,  # the floor of a case's limit (bench/hang.py): most quick cases take
                             # seconds; the reference epoch 5.6 min on a 2-core EPYC without AVX-512
    ),
    "full": Profile(
        name="full",
        summary="each model's real input size, 10 warm-up calls, >= 10 rounds in ~2 s, "
                "50,000-image epochs (CIFAR-10's training set)",
        max_image_size=None,  # each model at the size it was designed for (224 px for the ResNets)
        warmup_calls=10,      # cuDNN autotuning and compilation take more than two calls at real
                              # sizes
        min_rounds=10,
        max_time=2.0,
        long_rounds=5,
        epoch_images=50_000,  # CIFAR-10's training set: the epoch people actually train
        # 224-px images stop at 10,000 (1.5 GB held, on the device for the resident path): about ten
        # seconds of a ResNet-50 on one GPU, where 50,000 would be a minute per epoch and 7.5 GB
        # generated per shape
        epoch_bytes=1_500_000_000,
        loader_images=10_000,
        transfer_images=5_000,
        conv_scale=4,         # layers at 4x the quick size: the sizes of real feature maps
        case_timeout_s=1800,  # six 50,000-image epochs of a 224-px ResNet on one GPU take a few
                              # minutes
    ),
}

FAMILIES = {  # family -> benches/bench_<family>.py
    "forward": "inference: eval mode, no grad, batch on the device",
    "train_step": "forward, loss, backward, optimizer step, batch on the device",
    "conv": "Conv1d/2d/3d and pooling layers alone, forward and forward+backward, FLOPs and "
            "TFLOP/s",
    "h2d": "host<->device copies: pageable vs pinned, blocking vs non_blocking, sizes, dtypes; "
           "copy share of a step",
    "dataloader": "images/s of the input pipeline alone: workers, pin_memory, PIL + augmentation "
                  "vs tensors",
    "epoch": "a full training epoch: DataLoader path vs device-resident path, data-stall share",
    "transfer": "frozen-backbone transfer learning: full fine-tune vs last layer vs last layer on "
                "cached features",
    "checkpoint": "saving and restoring model + optimizer state (atomic torch.save, "
                  "torch.load weights_only)",
    "ddp": "synchronous data-parallel epochs (DDP via torchrun) at world sizes 1, 2, 4...: "
           "scaling, communication",
    "harness": "one empty timed round: the synchronising timer's own cost per round",
}

# Shortest round on an accelerator: a round starts on an idle device and ends with a full
# synchronise, a fixed 5-20 us that would be a third of a 20-40 us case; pytest-benchmark's
# calibration stops at 10x its timer's precision. Two milliseconds of iterations keep that fixed
# cost near or under 1% (the harness family measures it).
ACCELERATOR_MIN_ROUND_S = 2e-3
CROSS_CHECK_MIN_S = 1e-3  # cases this long or longer are timed a second way under --cross-check
CROSS_CHECK_BUDGET_S = 0.5  # ... with calls for about this long, at least 3 and at most 20

# a case has hung past this many times the seconds the run's estimate expects of it (bench/hang.py):
# the cost model has been 1.6x under on a machine slower than its assumed rates
HANG_FACTOR = 3.0

SEED = 0  # every case seeds its model, data and augmentation with it: runs see the same numbers
DEVICES = "auto, cpu, cuda, cuda:N, mps"
OPTIMIZERS = ("adam", "sgd")
# built in; a project registers more (workloads/datasets.py)
DATASETS = ("synthetic", "cifar10", "mnist")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
MEMORY_FORMATS = ("nchw", "channels_last")
COMPILE = ("off", "on")
# DataLoader worker counts swept by the dataloader family: 0 (in the main process), 1, 2, then
# powers of two; only those up to the run's CPU threads run (more workers than threads measures the
# scheduler).
WORKER_COUNTS = (0, 1, 2, 4, 8, 16, 32, 64, 128)
EPOCH_WORKERS = 4  # loader workers of the epoch family's DataLoader path, at most the run's threads


# The CPU's share of `--device auto --profile full` on a machine with an accelerator: its 224-px
# ResNet epochs would take hours and its ddp launches meet their time limit. The CPU side runs the
# models a CPU trains in seconds per epoch (the GPU-over-CPU speedup of these models is the
# headline) and every case without a model (layers, loaders, checkpoints of those models), but not
# the cases benches mark cpu_heavy (the reference epoch, transfer learning on a 224-px ResNet-18,
# ddp). `--device cpu --profile full` runs everything.
CPU_SUBSET_MODELS = ("mlp", "kerascnn")


def worker_counts(threads: int) -> list[int]:
    return [w for w in WORKER_COUNTS if w <= threads]


def epoch_workers(threads: int, on_cpu: bool = False) -> int:
    """Loader workers of the epoch family's DataLoader path. On the CPU the model's intra-op threads
    and the workers share the cores, half each (epoch_threads; below 2 cores the main process
    loads): both at full count oversubscribed them, which slowed the CPU epoch and inflated the
    GPU-over-CPU speedup."""
    return min(EPOCH_WORKERS, threads // 2 if on_cpu else threads)


def epoch_threads(threads: int, on_cpu: bool) -> int | None:
    """The intra-op threads a CPU loader epoch trains with: the cores its workers leave; None
    elsewhere (the run's threads)."""
    return max(1, threads - epoch_workers(threads, True)) if on_cpu else None


# the reference epoch has at least this many steps, whatever the profile's epoch
REFERENCE_MIN_STEPS = 16


def epoch_size(profile: Profile, shape: tuple[int, int, int]) -> int:
    """Images in one epoch of images of `shape` (C, H, W): the profile's, capped by its epoch
    bytes."""
    c, h, w = shape
    return min(profile.epoch_images, profile.epoch_bytes // (c * h * w))


def image_size(default: int, profile: Profile) -> int:
    """The one image-size rule of every family: the model's own size, capped by the profile."""
    return min(default, profile.max_image_size) if profile.max_image_size else default


# --- Judging: the defaults of compare, ab, bisect, gate-check, changes and the report ---
ALPHA = 0.01  # chance of any false alarm in an A/B job; of a wrong call in a bisect step
MIN_EFFECT = 0.05          # compare, plot, report: the smallest slowdown called a regression
# `imgbench run`'s end: a case listed as moved against the previous run (information only: two
# separate runs on the 2-core box differ by 5-30% for many cases)
RUN_MOVED = 0.10
# ab, gate-check and bisect (one policy: what the gate fails, bisect looks for): pairs resolve
# smaller effects than two stored runs do
AB_MIN_EFFECT = 0.03
# ab, gate-check and bisect: the sd of the log-ratio of two worker processes of one tree (a bias
# each pair of processes keeps for its lifetime, which its pairs cannot see), added to every case's
# variance. Three A/A jobs of the real gate on the 2-core box (2026-12-06) spread forward
# x0.998-1.010 and the loader x0.987-1.008 (sd of the log-ratios 0.006 and 0.011); `imgbench
# gate-check` estimates it per case from its own A/A jobs.
AB_PROCESS_SD = 0.01
# The same on an accelerator (a case whose id names cuda or mps), where each worker process also
# picks its own cuDNN algorithms by timing trials (cudnn.benchmark, as the suite runs): two
# processes of one tree may settle on different kernels. Not measured (no GPU has run an A/A
# here): an assumed 3%, the "several percent" a review saw autotuning move conv-heavy cases
# between runs, until gate-check on the GPU runner measures it (--process-from).
AB_PROCESS_SD_ACCELERATOR = 0.03
# ab and gate-check: a case's measured between-process sd (gate-check's A/A jobs of this machine
# class) raises its term once this many jobs measured it; fewer read too loosely
AB_PROCESS_MIN_JOBS = 5
# ab and gate-check: the fresh pairs of worker processes a gated case's pairs come from (each round
# starts both workers again), so that the process term shrinks by its square root. 10 A/A jobs of
# one pair each (2026-12-06) measured 2.1% for kerascnn's forward: with one pair a 5% slowdown
# cannot be told from a process; a round costs ~13 s of start-up and set-up for the gate set.
AB_ROUNDS = 4
# The cost models' (bench/estimate.py, preflight/plan.py): a pytest process before and after its
# cases -- interpreter, torch import, CUDA init, the plugin, collection, writing its files. A review
# read 10-17 s before a first case on an H100 box (calibration included, counted apart); the 2-core
# box ~13 s for the gate set. .ci/gpu-check's summary measures it per step.
PROCESS_START_S = 15.0
# ab and gate-check: a burst this long (at least one call): timer-safe, short next to the host's
# regimes; a case's first set at least this many pairs (they give an exact 95% interval)
AB_BURST_S, AB_MIN_PAIRS = 0.05, 12
# ab and gate-check: no set of pairs runs longer than this (a case's first set is cut here, as a
# case, where 12 pairs take longer: a ddp pair is two torchrun launches, ~16 s on the 2-core box)
AB_SET_LIMIT_S = 120.0
# ab and gate-check: families measured and shown but outside Holm's family, never failing a job.
# On the 2-core box a ddp pair is two torchrun launches (~8 s): 12 pairs in 190 s cannot resolve
# 3%; the loader's pairs of processes read x0.88 and x0.96 in A/A (cause not found, 2026-11-30).
AB_INFORMATION_FAMILIES = ("ddp", "dataloader")
# ab and gate-check: seconds of pairs per case on average, both sides (the job's cap is this
# times its cases; a first set takes half, policy.Sizing). On the 2-core box the pairs'
# log-ratios have an sd of 0.03-0.25 by the day (the host's), so hundreds of pairs resolve 5% on
# a noisy day.
AB_BUDGET_S = 20.0
# A/B jobs, and injected slowdowns in percent (0: A/A)
GATE_CHECK_JOBS, GATE_CHECK_EFFECTS = 3, "0,5,10"
# where gate-check appends its trials (JSON lines): rates accumulate over its runs
GATE_CHECK_RESULTS = "results/gate-check.jsonl"
# a peak that grew by more than both is a memory regression
MEMORY_EFFECT, MEMORY_FLOOR_MIB = 0.01, 1.0
# CUDA: a workspace cuDNN or cuBLAS picks is tens of MiB, so growth below this is never a
# regression; and the figure is gated only against a history of this many runs of the case
MEMORY_FLOOR_MIB_CUDA, MEMORY_HISTORY_RUNS = 64.0, 3
CHANGE_P = 0.001           # changes: significance of each split of a history

# imgbench explain: pairs of profiled blocks per case. On the 2-core development box the two blocks
# of a pair of kerascnn's forward differ by ~15%: 8 pairs missed a +0.5 ms convolution in a 9 ms
# step, 48 found it (31 s in all), and an A/A at 48 showed no line.
EXPLAIN_PAIRS = 48
EXPLAIN_WARMUP = 3  # calls per side after the bench's own warm-up, before the first profiled block

# imgbench bisect: seconds of pairs per case and step before a step that cannot say stops the
# bisection.
BISECT_STEP_BUDGET_S = 60.0
