"""One training step on a batch already on the device: forward, loss, backward, optimizer step."""

import pytest


@pytest.mark.gate(model="kerascnn", batch_size=32)
def test_train_step(case, measure):
    measure(case.train_step(), case.info())
