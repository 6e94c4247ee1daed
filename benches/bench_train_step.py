"""One training step on a batch already on the device: forward, loss, backward, optimizer step."""


def test_train_step(case, measure):
    measure(case.train_step(), case.info())
