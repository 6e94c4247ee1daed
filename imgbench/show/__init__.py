"""Figures and reports: they draw what was decided, never decide."""
