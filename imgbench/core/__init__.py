"""The base every layer stands on: errors, named configuration, the option table, atomic writes,
tables."""
