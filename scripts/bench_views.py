"""Cost of the dashboard's per-trial figure and note against the study's own wall time.

    python -m lrpo_study optimize --storage sqlite:///views.db        # the default study
    python scripts/bench_views.py --storage sqlite:///views.db --study quickstart-lrpo

Copies the SQLite file and, for every finished trial, starts a trial in a
new study of the copy with the same record and times the call the worker
makes when a trial ends (``publish``: the SVG figure as an artifact and the
note); prints the total beside the study's wall time (first trial start to
last trial end). Target: under 5 %.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from lrpo_study.views.trial import publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", required=True, help="sqlite:///FILE")
    parser.add_argument("--study", default="quickstart-lrpo")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.db"
        shutil.copy(args.storage.removeprefix("sqlite:///"), copy)
        study = optuna.load_study(study_name=args.study, storage=f"sqlite:///{copy}")
        trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
        wall = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
        target = optuna.create_study(storage=f"sqlite:///{copy}", directions=study.directions)
        seconds = 0.0
        for t in trials:
            trial = target.ask()
            for key, value in t.user_attrs.items():
                trial.set_user_attr(key, value)
            start = time.perf_counter()
            publish(trial, outcome=t.state.name.lower(), artifact_dir=str(Path(tmp) / "artifacts"))
            seconds += time.perf_counter() - start
            target.tell(trial, state=TrialState.PRUNED)
    print(f"{len(trials)} trials; study wall time {wall:.1f} s; figures and notes {seconds:.2f} s "
          f"({seconds / len(trials) * 1000:.0f} ms per trial)")
    print(f"fraction={seconds / wall:.4f}")


if __name__ == "__main__":
    main()
