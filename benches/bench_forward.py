"""Inference: eval mode, no grad, a batch already on the device."""

import pytest


@pytest.mark.gate(model="kerascnn", batch_size=32)
def test_forward(case, measure):
    measure(case.forward(), case.info())
