"""Inference: eval mode, no grad, a batch already on the device."""


def test_forward(case, measure):
    measure(case.forward(), case.info())
