"""Experiments of the thesis' chapter 4, side by side with baselines.

    python -m training experiment NAME [--data-dir DIR] [--reduced | --dry-run]
    python -m training experiment page        # reports/README.md from reports/*/results.json

NAME is a config in configs/experiments/ (table41, fig41, fig43a, fig43b, fig44) or `all`.
Each config holds three recipes: `full` (one GPU, minutes), `reduced` (2 CPU cores, real data
subsets) and `dry_run` (synthetic data, seconds: what the tests run). Every experiment writes
reports/<name>/results.json and PNGs, naming the hardware and the exact command.

Files: spec (configs → recipes), arms (the compared models), runner (training one arm through
training.fit's session and epoch code), timing (forward/backward split), timed_inference
(timed test passes), deq_solver (the torchdeq baseline), one module per experiment, page (the
README).
"""
