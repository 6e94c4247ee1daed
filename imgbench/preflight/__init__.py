"""Before a run: doctor's checks and the summary of the one-shot GPU check."""
