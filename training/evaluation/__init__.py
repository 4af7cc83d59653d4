"""Evaluation and reporting: per-sample outcomes (collect.py) → metrics.json numbers
(metrics.py, gate.py, lm_metrics.py; a whole checkpoint on a split: checkpoint_eval.py) → the
report's pictures (plots.py, sweep.py, tradeoff.py)."""
