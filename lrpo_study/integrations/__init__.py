"""Take a tuned schedule home, or bring your trainer to a study.

- ``lrpo_study.integrations.settings``: ``load_settings`` / ``load_schedule`` (exported as
  ``lrpo_study.load_schedule``) rebuild a tuned schedule in any loop; ``export`` writes those settings
  (and ``export_hf`` the Trainer's keyword arguments) from a study.
- ``lrpo_study.integrations.lightning``: ``lr_scheduler_config(schedule)`` for
  ``configure_optimizers``, ``ScheduleCallback`` for the Trainer's callbacks, ``TrialCallback`` to run a
  fit as a study's trial.
- ``lrpo_study.integrations.hf``: ``ScheduleCallback(schedule)`` for the Hugging Face ``Trainer`` (pass
  ``callback.scheduler`` in ``optimizers=(optimizer, ...)``) and ``TrialCallback`` for a trial.

Each framework module imports its framework; ``import lrpo_study`` imports neither (install the extras:
``pip install 'lrpo_study[lightning,hf]'``).
"""
