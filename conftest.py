# A plain checkout (no install) loads the plugin here; installed, the pytest11 entry point does,
# under the same dotted name, so it is never registered twice.
pytest_plugins = ["imgbench.plugin"]
