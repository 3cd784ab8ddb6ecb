"""Glue for frameworks that step schedulers themselves. Each module imports its framework;
``import lrpo_study`` imports neither (install the extras: ``pip install 'lrpo_study[lightning,hf]'``).

- ``lrpo_study.integrations.lightning``: ``lr_scheduler_config(schedule)`` for
  ``configure_optimizers`` and ``ScheduleCallback`` for the Trainer's callbacks.
- ``lrpo_study.integrations.hf``: ``ScheduleCallback(schedule)`` for the Hugging Face
  ``Trainer``; pass ``callback.scheduler`` in ``optimizers=(optimizer, ...)``.
"""
