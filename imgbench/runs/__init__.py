"""Stored runs: the run file, storage, records, histories and their SQLite cache. No torch."""
