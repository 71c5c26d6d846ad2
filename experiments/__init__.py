"""Experiment drivers: the sweeps and diagnostics that chose the shipped hyperparameters
(history in docs/experiments/). Users measure with bench/; these are for changing a config."""
