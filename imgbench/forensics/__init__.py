"""Which commit, which operator: the interleaved A/B, bisect, explain and the gate measuring
itself."""
