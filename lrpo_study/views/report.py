"""One self-contained plotly HTML page comparing every method's study in a storage.

The same comparison figure is saved into each study for optuna-dashboard
(``save_plotly_graph_object``) with a short markdown note (``save_note``).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from lrpo_study import metrics

from . import record

# The paper's Table 1 (its machine, its split): (epochs, best val accuracy, seconds).
PAPER_POINTS = {"paper fixed-LR baseline (Table 1)": (100, 0.8845, 477.15), "paper LRPO (Table 1)": (16, 0.8645, 76.30)}
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
BASELINE_NAME = "fixed-LR baseline, lr 0.05 x 100 epochs (ours)"
FLOPS, SECONDS, EPOCHS = metrics.TRAIN_FLOPS.name, metrics.TRAIN_SECONDS.name, metrics.EPOCHS.name


@dataclass(frozen=True)
class MethodTrials:
    """One study's complete trials, scored by the study's quality objective (its first objective that
    scores the model: ``metrics.quality_objective``)."""

    study: optuna.Study
    method: str
    task: str
    trials: list[FrozenTrial]
    metric: metrics.Objective
    # A PBT study shows its final members, each at its population's whole cost (every member's computed
    # epochs, FLOPs and seconds): trial number → {"train_flops": ..., "train_seconds": ..., "epochs": ...}.
    costs: dict[int, dict[str, float]] = field(default_factory=dict)

    def cost(self, t: FrozenTrial, key: str) -> float:
        """A cost objective of a trial (``train_flops``, ``train_seconds``, ``epochs``), as compared across
        methods; NaN for a trial of a version that did not count it."""
        if t.number in self.costs:
            return float(self.costs[t.number][key])
        return record.TrialRecord.of(t).value(key)

    @property
    def label(self) -> str:
        return self.metric.label

    def quality(self, t: FrozenTrial) -> float:
        return record.TrialRecord.of(t).value(self.metric)

    def best(self) -> FrozenTrial:
        pick = max if self.metric.higher_is_better else min
        return pick(self.trials, key=self.quality)

    @property
    def cost_key(self) -> str:
        """What the front is drawn against: FLOPs, counted; seconds for trials of a version that did not count."""
        flops, seconds = metrics.TRAIN_FLOPS.name, metrics.TRAIN_SECONDS.name
        return flops if not any(math.isnan(self.cost(t, flops)) for t in self.trials) else seconds

    def pareto(self) -> list[FrozenTrial]:
        """Non-dominated trials for (quality, ``cost_key`` ↓), cheapest first."""
        front: list[FrozenTrial] = []
        sign, key = -1 if self.metric.higher_is_better else 1, self.cost_key  # the key reads every trial: once
        for t in sorted(self.trials, key=lambda t: (self.cost(t, key), sign * self.quality(t))):
            if not front or self.metric.better(self.quality(t), self.quality(front[-1])):
                front.append(t)
        return front


def collect(storage: optuna.storages.BaseStorage) -> list[MethodTrials]:
    out = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        spec = study.user_attrs.get(record.SPEC)
        if spec is None:
            continue
        trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if record.is_ours(t) and record.CURVES in t.user_attrs]
        costs: dict[int, dict[str, float]] = {}
        if "pbt" in spec:
            trials, costs = _final_members(study, trials)
        if trials:
            has_accuracy = record.TrialRecord.of(trials[0]).has_accuracy
            metric = record.study_quality(spec, has_accuracy=has_accuracy)
            out.append(MethodTrials(study, spec["method"], record.stored_task(spec)[0], trials, metric, costs))
    return out


def _final_members(study: optuna.Study, complete: list[FrozenTrial]) -> tuple[list[FrozenTrial], dict[int, dict[str, float]]]:
    """A PBT study's last-generation trials, each costed at what the whole population computed so far:
    every finished generation's epochs, FLOPs and seconds less those the trajectory cache served."""
    totals = {o.name: 0.0 for o in (metrics.EPOCHS, metrics.TRAIN_FLOPS, metrics.TRAIN_SECONDS)}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        cached = t.user_attrs.get(record.CACHED_EPOCHS, 0)
        computed = {name: c[cached:] for name, c in t.user_attrs.get(record.CURVES, {}).items()}
        for name in totals:
            cost = metrics.parse_objective(name)
            totals[name] += cost.value(computed) if cost.curve in computed else math.nan  # FLOPs before 0.6.0: not counted
    last = max((t.user_attrs.get(record.PBT_GENERATION, 0) for t in complete), default=0)
    final = [t for t in complete if t.user_attrs.get(record.PBT_GENERATION) == last]
    return final, {t.number: dict(totals) for t in final}


def by_task(methods: list[MethodTrials]) -> dict[tuple[str, str], list[MethodTrials]]:
    """Studies grouped by task and quality objective: only studies that score the same thing share a chart."""
    groups: dict[tuple[str, str], list[MethodTrials]] = {}
    for m in methods:
        groups.setdefault((m.task, m.metric.name), []).append(m)
    return groups


def _label(m: MethodTrials) -> str:
    return f"{m.method} ({m.study.study_name})" if m.method != m.study.study_name else m.method


def _hover(t: FrozenTrial) -> str:
    return f"trial {t.number}<br>{record.params_text(t)}"


# The comparison charts: which cost is on x, and how its axis reads. FLOPs are counted, the same on any
# machine; seconds are this machine's clock under its load, shown beside them.
AXES = {metrics.TRAIN_FLOPS.name: ("training FLOPs (log)", "log"), metrics.TRAIN_SECONDS.name: ("training seconds (log)", "log"),
        metrics.EPOCHS.name: ("epochs", "linear")}


def comparison_figure(methods: list[MethodTrials], x_key: str) -> go.Figure:
    """Every study of one task: trials and Pareto fronts against ``x_key`` (a key of ``AXES``).

    One chart per figure with the legend below it, so it stays readable in a
    half-width dashboard card."""
    label = methods[0].label
    x_title, x_type = AXES[x_key]
    fig = go.Figure()
    for i, m in enumerate(methods):
        color = COLORS[i % len(COLORS)]
        fig.add_trace(go.Scatter(
            x=[m.cost(t, x_key) for t in m.trials], y=[m.quality(t) for t in m.trials],
            mode="markers", marker={"color": color, "opacity": 0.35, "size": 6}, name=f"{_label(m)} trials",
            legendgroup=_label(m), text=[_hover(t) for t in m.trials], hoverinfo="text+x+y",
        ))
        front = m.pareto()
        fig.add_trace(go.Scatter(
            x=[m.cost(t, x_key) for t in front], y=[m.quality(t) for t in front],
            mode="lines+markers", line={"color": color, "shape": "hv"}, name=f"{_label(m)} Pareto front",
            legendgroup=_label(m), text=[_hover(t) for t in front], hoverinfo="text+x+y",
        ))
    baseline = [(m, t) for m in methods for t in m.trials if t.user_attrs.get(record.REFERENCE) == "baseline"]
    if baseline:
        m, t = baseline[0]
        fig.add_trace(go.Scatter(x=[m.cost(t, x_key)], y=[m.quality(t)], mode="markers",
                                 marker={"symbol": "star", "size": 14, "color": "black"}, name=BASELINE_NAME))
    fashion_accuracy = (methods[0].task, methods[0].metric) == ("fashion-mnist", metrics.BEST_VAL_ACCURACY)
    paper_points = PAPER_POINTS if fashion_accuracy and x_key != metrics.TRAIN_FLOPS.name else {}  # the paper counted no FLOPs
    for name, (epochs, acc, seconds) in paper_points.items():
        fig.add_trace(go.Scatter(
            x=[seconds if x_key == metrics.TRAIN_SECONDS.name else epochs], y=[acc], mode="markers",
            marker={"symbol": "diamond" if "baseline" in name else "x", "size": 12, "color": "grey"},
            name=name + (" (its own machine's seconds)" if x_key == metrics.TRAIN_SECONDS.name else ""),
        ))
    fig.update_xaxes(type=x_type, title_text=x_title)
    fig.update_yaxes(title_text=label)
    fig.update_layout(
        title={"text": f"{methods[0].task}: {label} vs {x_title.split(' (')[0]}", "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        height=520, margin={"l": 60, "r": 40, "t": 50, "b": 40},
        modebar={"orientation": "v"},  # down the right edge: a horizontal toolbar covers the card's title
        showlegend=True,  # plotly hides a legend of one entry; every marker kind is named, always
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0, "font": {"size": 10}},
    )
    return fig


def curves_figure(methods: list[MethodTrials]) -> go.Figure:
    curve = methods[0].metric.curve
    fig = make_subplots(rows=1, cols=2, subplot_titles=("learning rate of Pareto trials", f"{curve} of Pareto trials"))
    for i, m in enumerate(methods):
        for t in m.pareto():
            curves = t.user_attrs["curves"]
            epochs = list(range(1, len(curves[metrics.LR]) + 1))
            name = f"{_label(m)} #{t.number}"
            line = {"color": COLORS[i % len(COLORS)]}
            fig.add_trace(go.Scatter(x=epochs, y=curves[metrics.LR], mode="lines", name=name, legendgroup=name, line=line), row=1, col=1)
            fig.add_trace(go.Scatter(x=epochs, y=curves[curve], mode="lines", name=name, legendgroup=name, line=line, showlegend=False), row=1, col=2)
    fig.update_yaxes(type="log", title_text="lr (log)", row=1, col=1)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=500)
    return fig


def best_table(methods: list[MethodTrials]) -> list[dict[str, Any]]:
    rows = []
    for m in methods:
        t = m.best()
        rows.append({
            "task": m.task, "method": _label(m), "trial": t.number, "quality": f"{m.label} {m.quality(t):.4f}",
            "train FLOPs": f"{m.cost(t, FLOPS):.4g}", "train seconds": f"{m.cost(t, SECONDS):.2f}", "epochs": int(m.cost(t, EPOCHS)),
            "complete trials": len(m.trials), "params": record.params_text(t),
        })
    return rows


def confirmed_table(methods: list[MethodTrials]) -> list[dict[str, Any]]:
    """What ``confirm`` stored: each re-trained trial's test metric over fresh seeds, best first."""
    confirmed = []
    for m in methods:
        by_number = {t.number: t for t in m.trials}
        for number, c in record.confirmations(m.study.user_attrs).items():
            confirmed.append((m, number, by_number.get(number), c))
    confirmed.sort(key=lambda c: -c[3].mean if c[0].metric.higher_is_better else c[3].mean)
    return [{
        "method": _label(m), "trial": number, "reference": (trial.user_attrs.get(record.REFERENCE) if trial else None) or "",
        "epochs": c.epochs, "test metric": c.metric.replace("_", " "), "mean ± sd": f"{c.mean:.4f} ± {c.sd:.4f}",
        "seeds": ", ".join(str(s) for s in c.seeds),
    } for m, number, trial, c in confirmed]


def _table_html(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(methods: list[MethodTrials], output: Path) -> dict[tuple[str, str], list[go.Figure]]:
    """The HTML page; returns each task's comparison figures."""
    figures = {key: [comparison_figure(group, x) for x in AXES] for key, group in by_task(methods).items()}
    sections = []
    for i, ((task, metric), group) in enumerate(by_task(methods).items()):
        sections += [
            f"<h2>Task {html.escape(task)}: {html.escape(group[0].label)}</h2>",
            *(fig.to_html(full_html=False, include_plotlyjs=i == 0 and j == 0) for j, fig in enumerate(figures[task, metric])),
            curves_figure(group).to_html(full_html=False, include_plotlyjs=False),
        ]
    page = "\n".join([
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>lrpo_study report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style>",
        "</head><body><h1>lrpo_study: learning-rate schedules, speed vs quality</h1>",
        "<p>Each point is a complete trial; lines are each method's Pareto front. Paper points are "
        "the LRPO paper's Table 1 (its machine and split: compare epochs, not seconds).</p>",
        *sections,
        "<h2>Best trial per method</h2>", _table_html(best_table(methods)),
        *(["<h2>Confirmed on the test set (python -m lrpo_study confirm)</h2>",
           "<p>Re-trained with fresh seeds; scored on the task's test data, which no study saw. "
           "This, not the validation numbers above, tells a good schedule from a lucky trial.</p>",
           _table_html(confirmed)] if (confirmed := confirmed_table(methods)) else []),
        "</body></html>",
    ])
    output.write_text(page, encoding="utf-8")
    return figures


def _tag(reference: str) -> str:
    return f" ({reference})" if reference else ""


def save_to_dashboard(methods: list[MethodTrials], figures: dict[tuple[str, str], list[go.Figure]]) -> None:
    from optuna_dashboard import save_note, save_plotly_graph_object  # noqa: PLC0415

    for m in methods:
        best = m.best()
        front = m.pareto()
        label = m.label
        confirmed = "".join(
            f"- trial {r['trial']}{_tag(r['reference'])}: {r['test metric']} {r['mean ± sd']} in {r['epochs']} epochs, seeds {r['seeds']}\n"
            for r in confirmed_table([m])
        )
        for x_key, figure in zip(AXES, figures[m.task, m.metric.name], strict=True):
            save_plotly_graph_object(m.study, figure, graph_object_id=f"lrpo_study_vs_{x_key}")
        save_note(m.study, (
            f"## {m.study.study_name}: {m.method} on {m.task}\n\n"
            f"- complete trials: {len(m.trials)}, Pareto trials: {len(front)}\n"
            f"- {label} {m.quality(best):.4f} (trial {best.number}, "
            f"{m.cost(best, EPOCHS):.0f} epochs, {m.cost(best, FLOPS):.4g} FLOPs, {m.cost(best, SECONDS):.1f} s)\n"
            f"- cheapest Pareto trial: #{front[0].number}, {m.quality(front[0]):.4f} in "
            f"{m.cost(front[0], FLOPS):.4g} FLOPs ({m.cost(front[0], SECONDS):.1f} s)\n\n"
            + (f"Confirmed on the test set (`python -m lrpo_study confirm`):\n\n{confirmed}\n" if confirmed else "")
            + f"The comparison charts below show every {m.task} study in this storage "
            "(`python -m lrpo_study report` writes it as HTML too).\n"
        ))
