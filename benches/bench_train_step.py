"""One training step on a batch already on the device: forward, loss, backward, optimizer step."""

from imgbench import workloads


def test_train_step(case, measure):
    x, y = case.batch()
    measure(workloads.train_step(case.build_model(), x, y, case.settings.optimizer), case.info())
