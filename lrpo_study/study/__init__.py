"""Studies: Optuna around any training loop.

``spec`` reads and checks a study file; ``trial_run`` is the trial API every loop reports through (ours in
``objective``, the user's own, Lightning's, the HF Trainer's); ``pruning`` is the early-stopping rule;
``runner`` creates and resumes studies and fans them out over ``workers``; ``storage`` and ``retrying`` open
Optuna storages that ride out an outage; ``liveness`` fails and re-queues the trials of dead workers;
``confirm`` re-trains chosen trials with fresh seeds on the test data.
"""
