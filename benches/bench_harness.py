"""The harness's own cost: one timed round with nothing in it (device sync plus two clock reads).

Every other figure includes this once per round; it should be orders of magnitude below them.
"""

from imgbench.hw import devices

ROUNDS, WARMUP = 2000, 100


def test_empty_round(device, benchmark):
    benchmark.extra_info.update(images=0, device_name=devices.device_name(device))
    benchmark.pedantic(lambda: None, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
