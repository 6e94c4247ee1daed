"""Inference: eval mode, no grad, a batch already on the device."""

from imgbench import workloads


def test_forward(case, measure):
    x, _ = case.batch()
    measure(workloads.forward(case.build_model(), x), case.info())
