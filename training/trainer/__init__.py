"""The trainer: a run's session (training.trainer.session), one epoch (epoch.py) of phase
steps (steps.py, with their losses, policy gradients and rewards), optimisers, lr schedule,
Lookahead, the distributed runtime and the resumable state."""
