"""Named configuration (imgbench.config): the rules that follow from a run's threads and profile,
and the names the rest of the suite looks up."""

import dataclasses
import subprocess
import sys

import pytest

from imgbench.core import config
from imgbench.core.config import PROFILES


@pytest.mark.parametrize("threads, counts", [
    (1, [0, 1]),
    (2, [0, 1, 2]),
    (3, [0, 1, 2]),
    (16, [0, 1, 2, 4, 8, 16]),
    (10_000, list(config.WORKER_COUNTS)),
])
def test_worker_counts_stop_at_the_runs_threads(threads, counts):
    assert config.worker_counts(threads) == counts


@pytest.mark.parametrize("threads, workers",
                         [(1, 1), (2, 2), (config.EPOCH_WORKERS + 3, config.EPOCH_WORKERS)])
def test_epoch_workers_are_at_most_the_runs_threads(threads, workers):
    assert config.epoch_workers(threads) == workers


@pytest.mark.parametrize("default, profile, size", [
    (224, "quick", 32),   # capped by the profile
    (28, "quick", 28),    # never made larger than the model's own
    (224, "full", 224),   # the model's own size
    (32, "full", 32),
])
def test_image_size_is_the_models_own_capped_by_the_profile(default, profile, size):
    assert config.image_size(default, PROFILES[profile]) == size


def test_profiles_are_named_by_their_key_and_made_by_keyword_only():
    assert all(p.name == name for name, p in PROFILES.items())
    fields = {f.name: getattr(PROFILES["quick"], f.name)
              for f in dataclasses.fields(config.Profile)}
    assert config.Profile(**fields) == PROFILES["quick"]
    with pytest.raises(TypeError):
        config.Profile(*fields.values())  # a positional 512 could land in the wrong field
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["quick"].min_rounds = 1


def test_configuration_imports_no_torch():
    code = "import sys, imgbench.core.config, imgbench.core.options; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stdout) == (0, "False\n"), out.stderr
