"""Worker plugins copied beside a run and loaded into each side's own tree: standard library, pytest
(and torch)."""
