"""The pytest boundary: the plugin, its fixtures, run settings, rates, the estimate and the
in-process runner."""
