"""`fedrouter bench`: the paper's experiment matrix (methods x scenarios x seeds, generalization,
ablations) run as ordinary run dirs, and its tables, plots and paired statistics.

matrix.py plans and runs the cells (resumable, carried over by fingerprint); results.py builds
the tables and plots; markdown.py writes bench.md; paired.py holds the per-sample scores and the
paired differences that `fedrouter report` uses too."""
