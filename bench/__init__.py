"""podium benchmarks: one file per benchmark, each comparing with its peer in the same run."""
