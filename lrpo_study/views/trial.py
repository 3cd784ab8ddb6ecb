"""What optuna-dashboard shows on a trial's page: its curves as an SVG artifact and a markdown note.

The worker writes both when a trial ends (complete, pruned or diverged);
``confirm`` rewrites the note with the confirmed test metric. The figure is
plain SVG (the dashboard previews ``image/*`` artifacts), drawn here so that
no plotting backend is needed. Optuna's ``upload_artifact`` writes the file
before it records the artifact on the trial, so a worker that dies while
writing leaves at most an unreferenced file, never an entry without content.
"""

from __future__ import annotations

import html
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from lrpo_study import metrics

from . import record

_W, _PANEL_H, _LEFT, _TOP = 640, 170, 64, 28
_COLORS = {metrics.LR: "#1f77b4", metrics.TRAIN_LOSS: "#ff7f0e", metrics.VAL_LOSS: "#d62728", metrics.VAL_ACCURACY: "#2ca02c"}


def _panel(y0: int, title: str, series: Mapping[str, Sequence[float]], *, log: bool, n: int,
           cached: int, jump: int | None, steps: bool = False) -> list[str]:
    """One chart: epochs 1..n on x, ``series`` on y (log10 when ``log``)."""
    width, height = _W - _LEFT - 16, _PANEL_H - 40
    values = [math.log10(v) if log else v for s in series.values() for v in s if v > 0 or not log]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5

    def x(epoch: float) -> float:
        return _LEFT + (epoch - 1) / max(1, n - 1) * width

    def y(v: float) -> float:
        v = math.log10(v) if log else v
        return y0 + _TOP + (hi - v) / (hi - lo) * height

    out = [f'<text x="{_LEFT}" y="{y0 + 18}" font-size="13" font-weight="bold">{html.escape(title)}</text>']
    if cached:
        out.append(f'<rect x="{_LEFT}" y="{y0 + _TOP}" width="{x(cached) - _LEFT:.1f}" height="{height}" fill="#eeeeee">'
                   f'<title>epochs 1-{cached} came from the trajectory cache</title></rect>')
    if jump is not None:
        out.append(f'<line x1="{x(jump):.1f}" x2="{x(jump):.1f}" y1="{y0 + _TOP}" y2="{y0 + _TOP + height}" '
                   'stroke="#9467bd" stroke-dasharray="4 3"><title>LRPO jump epoch</title></line>')
    out.append(f'<rect x="{_LEFT}" y="{y0 + _TOP}" width="{width}" height="{height}" fill="none" stroke="#999"/>')
    for v, anchor in ((hi, y0 + _TOP + 4), (lo, y0 + _TOP + height)):
        label = f"{10 ** v:.2g}" if log else f"{v:.3g}"
        out.append(f'<text x="{_LEFT - 4}" y="{anchor}" font-size="10" text-anchor="end">{label}</text>')
    out.append(f'<text x="{_LEFT + width}" y="{y0 + _TOP + height + 12}" font-size="10" text-anchor="end">epoch {n}</text>')
    for i, (name, s) in enumerate(series.items()):
        kept = [(e + 1.0, v) for e, v in enumerate(s) if v > 0 or not log]
        if steps:  # a value held through each epoch: it changes halfway between two epochs' points, vertically
            kept = [p for (e, v), nxt in zip(kept, [*kept[1:], None], strict=True)
                    for p in ([(e, v)] if nxt is None else [(e, v), (e + 0.5, v), (e + 0.5, nxt[1])])]
        points = " ".join(f"{x(e):.1f},{y(v):.1f}" for e, v in kept)
        out.append(f'<polyline points="{points}" fill="none" stroke="{_COLORS[name]}" stroke-width="2"/>')
        out.append(f'<text x="{_LEFT + 8 + 110 * i}" y="{y0 + _TOP + height + 12}" font-size="11" fill="{_COLORS[name]}">{name}</text>')
    return out


def trial_svg(
    curves: Mapping[str, Sequence[float]], *, title: str, cached_epochs: int = 0, jump_epoch: int | None = None,
    lr_steps: bool = False,
) -> str:
    """Learning rate (log scale), training and validation loss, and validation accuracy per epoch; with
    ``lr_steps`` the lr is drawn as the steps it is (constant through each epoch: PBT's pieces)."""
    n = len(curves.get(metrics.VAL_LOSS, []))
    if n == 0:  # diverged within its first epoch: nothing per epoch to draw, but say so
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="60" viewBox="0 0 {_W} 60" font-family="sans-serif">'
                f'<rect width="100%" height="100%" fill="white"/><text x="8" y="24" font-size="14">{html.escape(title)}</text>'
                '<text x="8" y="46" font-size="12">no epoch finished: nothing to plot</text></svg>\n')
    panels = [("learning rate (log)", {metrics.LR: curves[metrics.LR]}, True),
              ("loss", {c: curves[c] for c in (metrics.TRAIN_LOSS, metrics.VAL_LOSS)}, False)]
    if metrics.VAL_ACCURACY in curves:
        panels.append((metrics.label(metrics.VAL_ACCURACY), {metrics.VAL_ACCURACY: curves[metrics.VAL_ACCURACY]}, False))
    height = 30 + _PANEL_H * len(panels)
    body = [f'<text x="8" y="18" font-size="14">{html.escape(title)}</text>']
    for i, (name, series, log) in enumerate(panels):
        body += _panel(24 + i * _PANEL_H, name, series, log=log, n=n, cached=cached_epochs, jump=jump_epoch,
                       steps=lr_steps and name.startswith("learning rate"))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" viewBox="0 0 {_W} {height}" '
            f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>{"".join(body)}</svg>\n')


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trial_note(attrs: Mapping[str, Any], params: Mapping[str, Any], *, number: int, outcome: str,
               confirmation: record.Confirmation | None = None) -> str:
    """Markdown: method and task, searched hyperparameters, α, epochs, seconds, why pruned, confirmation."""
    curves = attrs.get(record.CURVES, {})
    epochs = len(curves.get(metrics.VAL_LOSS, []))
    cached = attrs.get(record.CACHED_EPOCHS, 0)
    lines = [f"## Trial {number}: {attrs[record.METHOD]} on {attrs.get(record.TASK, 'fashion-mnist')} ({outcome})", ""]
    if attrs.get(record.REFERENCE):
        lines.append(f"- reference setting: **{attrs[record.REFERENCE]}**")
    searched = ", ".join(f"`{k}={_fmt(v)}`" for k, v in params.items()) or "none (every value fixed)"
    lines.append(f"- searched: {searched}")
    hp = attrs.get(record.HYPERPARAMETERS, {})
    lines.append(f"- optimizer: {hp.get('optimizer', 'sgd')}, lr {_fmt(hp.get('lr'))}, batch size {hp.get('batch_size')}")
    if record.PBT_MEMBER in attrs:
        lrs = ", ".join(f"{lr:.4g}" for lr in attrs.get(record.PBT_LRS, []))
        start = attrs[record.PBT_START_EPOCH]
        if attrs[record.PBT_PARENT] is None:
            how = "the population's start"
        else:
            how = f"{'exploited' if attrs.get(record.PBT_EXPLOITED) else 'continued'} trial {attrs[record.PBT_PARENT]}'s state at epoch {start}"
        lines.append(f"- PBT member {attrs[record.PBT_MEMBER]}, generation {attrs[record.PBT_GENERATION]} "
                     f"(epochs {start + 1}–{hp.get('epochs', '?')}): {how}; lr per generation {lrs}")
    if attrs.get(record.ALPHA) is not None:
        lines.append(f"- LRPO jump α = {attrs[record.ALPHA]:.4f}")
    lines.append(f"- epochs: {epochs} of {hp.get('epochs', epochs)} ({epochs - cached} computed, {cached} from the trajectory cache)")
    if epochs:
        found = metrics.available(curves)
        costs = [f"{o.label} {o.value(curves):.4g}" for o in found if o.is_cost and o.name != "epochs"]
        lines.append(f"- cost: {', '.join(costs)} (seconds: this machine's clock; the rest counted)")
        lines.append(f"- quality: {', '.join(f'{o.label} {o.value(curves):.4f}' for o in found if not o.is_cost)}")
    if attrs.get(record.PRUNED_REASON):
        lines.append(f"- stopped at epoch {attrs.get(record.PRUNED_EPOCH, '?')}: {attrs[record.PRUNED_REASON]}")
    if confirmation is not None:
        lines.append(f"- confirmed ({confirmation.metric.replace('_', ' ')} over seeds {confirmation.seeds}): "
                     f"**{confirmation.mean:.4f} ± {confirmation.sd:.4f}**")
    else:
        lines.append("- not confirmed yet (`python -m lrpo_study confirm` re-trains Pareto trials on the test set)")
    return "\n".join(lines) + "\n"


def publish(trial: optuna.Trial, *, outcome: str, artifact_dir: str | None) -> None:
    """Write the trial's note, and its figure when there is an artifact store."""
    from optuna_dashboard import save_note  # noqa: PLC0415

    attrs = trial.user_attrs
    save_note(trial, trial_note(attrs, trial.params, number=trial.number, outcome=outcome))
    curves = attrs.get(record.CURVES, {})
    if artifact_dir is None:
        return
    hp = attrs.get(record.HYPERPARAMETERS, {})
    jump = hp.get("pretrain_epochs", 0) + 1 if attrs.get(record.METHOD) == "lrpo" else None
    svg = trial_svg(curves, title=f"trial {trial.number}: {attrs[record.METHOD]} ({outcome})",
                    cached_epochs=attrs.get(record.CACHED_EPOCHS, 0), jump_epoch=jump, lr_steps=record.PBT_MEMBER in attrs)
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact  # noqa: PLC0415

    Path(artifact_dir).mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=f"trial-{trial.number}-", suffix=".svg")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(svg)
        upload_artifact(artifact_store=FileSystemArtifactStore(artifact_dir), file_path=path,
                        study_or_trial=trial, mimetype="image/svg+xml")
    finally:
        os.unlink(path)


def renote(study: optuna.Study, trial: optuna.trial.FrozenTrial, confirmation: record.Confirmation) -> None:
    """Rewrite a finished trial's note with its confirmation."""
    from optuna_dashboard import save_note  # noqa: PLC0415

    outcome = trial.state.name.lower()
    # The dashboard keys trial notes by the storage's trial id; optuna.Trial is how its API addresses one, and a
    # FrozenTrial's id has no public name (pinned: tests/test_upgrade_pins.py).
    save_note(optuna.Trial(study, trial._trial_id),
              trial_note(trial.user_attrs, trial.params, number=trial.number, outcome=outcome, confirmation=confirmation))
