"""The machine: devices, clocks that wait for them, numeric conditions, contention, environment,
peaks."""
