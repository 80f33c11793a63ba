"""The voice harness: stands in for Discord at the network edge, and nowhere else."""
