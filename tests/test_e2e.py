"""End to end: the real benches in the quick profile produce a pytest-benchmark JSON with the documented keys."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARAMS = {"model", "device", "batch_size"}
EXTRA = {"images", "images_per_s", "device_name", "threads", "profile", "image_size", "in_channels",
         "num_classes", "dataset", "warmup_calls", "mode"}


def test_quick_run_of_the_real_benches(tmp_path):
    out = tmp_path / "run.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benches", "--profile", "quick", "--device", "cpu", "--model",
         "kerascnn,tinyvgg", "--batch-size", "8", f"--benchmark-json={out}", "--benchmark-max-time=0.02",
         "-p", "no:cacheprovider", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads(out.read_text())
    by_name = {b["name"]: b for b in run["benchmarks"]}
    harness = by_name.pop("test_empty_round[cpu]")
    assert harness["params"] == {"device": "cpu"} and harness["stats"]["rounds"] == 2000
    assert sorted(by_name) == sorted(f"test_{family}[{m}-cpu-bs8]" for family in ("forward", "train_step")
                                     for m in ("kerascnn", "tinyvgg"))
    for b in by_name.values():
        assert set(b["params"]) == PARAMS and b["params"]["batch_size"] == 8
        assert set(b["extra_info"]) >= EXTRA, b["extra_info"]
        assert b["extra_info"]["image_size"] == 32 and b["extra_info"]["profile"] == "quick"
        assert b["extra_info"]["images_per_s"] > 0
        assert b["stats"]["median"] > 0
    for b in by_name.values():
        info = b["extra_info"]
        if b["name"].startswith("test_forward"):
            assert (info["mode"], info["grad"]) == ("eval", False)
        else:
            assert (info["mode"], info["optimizer"]) == ("train", "adam")
    assert run["machine_info"]["fingerprint"]
