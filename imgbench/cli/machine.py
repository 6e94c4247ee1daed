"""This machine: `env` (the environment a run records), `doctor` (what would break a run here)
and `list` (what the suite can run)."""

from __future__ import annotations

import json
import sys

from imgbench.cli import common
from imgbench.core import config, options
from imgbench.core.errors import FAILED, OK


def add(sub):
    e = sub.add_parser("env", help="the environment as the suite records it",
                       description="Hardware, versions and numeric flags recorded with every run.")
    e.add_argument("--json", action="store_true", help="print JSON instead of text")
    e.add_argument("--fingerprint", action="store_true",
                   help="print only the machine class (a folder name)")
    e.add_argument("--threads", help=options.BY_DEST["threads"].help_text)
    e.set_defaults(run=env)

    d = sub.add_parser("doctor",
                       help="what would break a run on this machine, checked in about a minute",
                       description="Versions, /dev/shm for the loader workers, a real "
                                   "torch.compile on each device, the GPU and NCCL, and whether "
                                   "ddp workers import as torchrun starts them: one line per check "
                                   "(ok, FAIL, skip, info). Exit 4 when a check failed: a run "
                                   "here would not run as it should.")
    d.add_argument("--device", default="auto", help=options.BY_DEST["device"].help_text)
    d.set_defaults(run=doctor)

    ls = sub.add_parser("list", help="models, benchmark families, axes and profiles",
                        description="What the suite can run.")
    ls.add_argument("--json", action="store_true", help="print JSON instead of text")
    ls.set_defaults(run=listing)


def env(args) -> int:
    import torch

    from imgbench.hw import devices, environment

    threads = common.threads(args.threads)
    if threads:
        torch.set_num_threads(threads)
    found = environment.environment(threads=threads or devices.usable_cores())
    print(found["fingerprint"] if args.fingerprint else json.dumps(found, indent=2) if args.json
          else environment.describe(found))
    return 0


def doctor(args) -> int:
    from imgbench.preflight import doctor as checks

    found = []
    for check in checks.each(args.device, common.progress("doctor")):
        print(checks.line(check), flush=True)  # as each finishes: a cut-short doctor said them
        found.append(check)
    if checks.failed(found):
        print(f"imgbench doctor: {sum(c.status == checks.FAIL for c in found)} check(s) failed",
              file=sys.stderr)
        return FAILED
    return OK


def listing(args) -> int:
    from imgbench.bench import project
    from imgbench.hw import devices
    from imgbench.workloads import datasets, models

    project.load_here()  # a project's own models and datasets too (docs/own-model.md)
    found = {
        "models": {n: {"input_shape": list(models.spec(n).input_shape),
                       "num_classes": models.spec(n).num_classes,
                       "summary": models.spec(n).summary} for n in models.names()},
        "datasets": {n: {"image_shape": list(datasets.spec(n).image_shape),
                         "num_classes": datasets.spec(n).num_classes,
                         "summary": datasets.spec(n).summary} for n in datasets.names()},
        "families": config.FAMILIES,
        "axes": {"device": config.DEVICES, "devices_here": devices.available(),
                 "batch_size": options.DEFAULTS["batch_size"],
                 "optimizer": list(config.OPTIMIZERS), "dataset": ["synthetic", *datasets.names()],
                 "precision": list(config.PRECISIONS), "memory_format": list(config.MEMORY_FORMATS),
                 "compile": list(config.COMPILE)},
        "profiles": {p.name: p.summary for p in config.PROFILES.values()},
    }
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    out = ["models:"]
    out += [f"  {n:<10} {'x'.join(map(str, m['input_shape'])):<10} {m['summary']}"
            for n, m in found["models"].items()]
    out += ["datasets:  (--dataset; synthetic: seeded random images, the default)"]
    out += [f"  {n:<10} {'x'.join(map(str, d['image_shape'])):<10} {d['summary']}"
            for n, d in found["datasets"].items()]
    out += ["families:"] + [f"  {n:<10} {s}" for n, s in config.FAMILIES.items()]
    out += ["axes:"] + [f"  {o.flag:<15} {o.valid}; default {o.default or o.unset}"
                        for o in options.OPTIONS]
    out += [f"  devices here: {', '.join(devices.available())}"]
    out += ["profiles:"] + [f"  {n:<10} {s}" for n, s in found["profiles"].items()]
    print("\n".join(out))
    return 0
