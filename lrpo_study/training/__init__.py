"""Training: the one loop every schedule and task shares, and what it keeps between epochs.

``loop`` trains a Task with a schedule and an optimizer; ``loop_state`` is everything the loop carries
across an epoch boundary; ``cache`` (shared epoch prefixes, trained once) and ``checkpoints`` (a retried
trial's last epoch) store that state; ``optimizers`` and ``hyperparameters`` turn a run's settings into
objects; ``devices`` places workers on GPUs. Nothing here knows Optuna.
"""
