"""imgbench: how fast image-classifier training runs here, CPU and GPU side by side.

`register_model` and `register_dataset` add a model or a dataset of one's own (docs/own-model.md);
torch is imported only when one is called, so that the analysis commands never import it.

PYTEST_DONT_REWRITE: `imgbench run` imports this package before pytest loads it as a plugin, so
pytest could not rewrite its asserts and warned so in every run (the package has no asserts to
rewrite)."""

__version__ = "0.1.0"


def register_model(name, builder=None, **kwargs):
    """Register a model builder under `name` for every command: see
    imgbench.workloads.models.register_model for the arguments. Call it from the project's
    conftest.py; without `builder`, a decorator."""
    from imgbench.workloads import models

    return models.register_model(name, builder, **kwargs)


def register_dataset(name, reader=None, **kwargs):
    """Register a dataset reader under `name` for --dataset: see
    imgbench.workloads.datasets.register_dataset for the arguments. Call it from the project's
    conftest.py; without `reader`, a decorator."""
    from imgbench.workloads import datasets

    return datasets.register_dataset(name, reader, **kwargs)
