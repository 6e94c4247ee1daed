"""The pytest plugin's entry point (pytest11, and a checkout's root conftest), kept at this path:
every version of imgbench names it so, and an A/B or bisect worker loads whichever tree it runs
under this name. The plugin itself is imgbench.bench.plugin."""

# hooks and fixtures, found by pytest on this module
from imgbench.bench.plugin import *  # noqa: F403
