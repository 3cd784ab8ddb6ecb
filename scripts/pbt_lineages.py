"""The winners of a PBT study: their lineage's lr per generation as a table, and their trial figures
(lr, losses, accuracy per epoch; the dashboard's figure) stacked into one SVG.

    python scripts/pbt_lineages.py --storage sqlite:///results/issue25-fashion.db --study fashion16-pbt \
        --top 3 -o results/issue25-lineages.svg
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import optuna
from optuna.trial import TrialState

from lrpo_study.study.storage import open_storage
from lrpo_study.views import record
from lrpo_study.views.trial import trial_svg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("-o", "--output", required=True, help="the SVG to write")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=open_storage(args.storage))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    last = max(t.user_attrs[record.PBT_GENERATION] for t in complete)
    final = [t for t in complete if t.user_attrs[record.PBT_GENERATION] == last]
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    winners = sorted(final, key=lambda t: (-sign * t.values[0], t.number))[: args.top]
    names = study.metric_names or ["value"]
    print(f"| trial | member | {names[0]} (validation) | lr per generation |")
    print("|---|---|---|---|")
    figures = []
    for t in winners:
        lrs = ", ".join(f"{lr:.3g}" for lr in t.user_attrs[record.PBT_LRS])
        print(f"| {t.number} | {t.user_attrs[record.PBT_MEMBER]} | {t.values[0]:.4f} | {lrs} |")
        svg = trial_svg(t.user_attrs[record.CURVES], title=f"{args.study} trial {t.number} (member "
                        f"{t.user_attrs[record.PBT_MEMBER]}): its lineage over every generation")
        figures.append(svg)
    heights = [int(re.search(r'height="(\d+)"', s).group(1)) for s in figures]  # type: ignore[union-attr]
    width = int(re.search(r'width="(\d+)"', figures[0]).group(1))  # type: ignore[union-attr]
    body, y = [], 0
    for svg, h in zip(figures, heights, strict=True):
        body.append(svg.replace("<svg ", f'<svg y="{y}" ', 1))
        y += h
    Path(args.output).write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
                                 f'viewBox="0 0 {width} {y}">{"".join(body)}</svg>\n', encoding="utf-8")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
