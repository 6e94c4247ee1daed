"""imgbench: how fast image-classifier training runs here, CPU and GPU side by side."""

__version__ = "0.1.0"
