"""Training curves from run folders (metrics.jsonl), drawn with matplotlib to a PNG."""

from __future__ import annotations

import json
from pathlib import Path

from kdforge.errors import UserError
from kdforge.fileio import read_records


def metrics_folder(folder: Path) -> Path:
    """The folder holding a run's metrics.jsonl (a staged method's last stage)."""
    from kdforge.engine.checkpoint import final_folder

    return final_folder(folder)


def test_metric(evals: list[dict]) -> tuple[str, str]:
    """(the eval records' key of the task's primary test metric, its axis label): detection runs report COCO AP."""
    return ("test_ap", "test AP (%)") if evals and "test_ap" in evals[0] else ("test_top1", "test top-1 (%)")


def run_curves(folder: Path) -> dict:
    records = [json.loads(line) for line in read_records(metrics_folder(folder) / "metrics.jsonl")]
    if not records:
        raise UserError(f"{folder} has no metrics.jsonl records; is it a kdforge run folder?")
    label = Path(folder).name
    summary = Path(folder) / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        label = f"{s['method']} ({s['student']})"
    return curves_of(records, label)


def curves_of(records: list[dict], label: str) -> dict:
    """The three panels' series from a run's epoch and eval records."""
    epochs = [r for r in records if r["type"] == "epoch"]
    evals = [r for r in records if r["type"] == "eval"]
    key, axis = test_metric(evals)
    # the cross-entropy panel: the classification term, or a detector's RoI classification loss
    return {"label": label, "epoch": [r["epoch"] for r in epochs], "loss": [r["loss/total"] for r in epochs],
            "ce": [r.get("loss/ce", r.get("loss/classifier")) for r in epochs], "eval_epoch": [r["epoch"] for r in evals],
            "test": [r[key] for r in evals], "test_axis": axis}


def epoch_to_fraction(folder: Path, fraction: float = 0.9) -> int | None:
    """The first evaluated epoch whose test top-1 reaches `fraction` of the run's final test top-1 (how fast it
    converges; resolution: the run's eval_every). None without evaluations."""
    path = metrics_folder(folder) / "metrics.jsonl"
    evals = [r for r in map(json.loads, read_records(path)) if r.get("type") == "eval"] if path.exists() else []
    if not evals:
        return None
    key = test_metric(evals)[0]
    final = evals[-1][key]
    return next(int(r["epoch"]) for r in evals if r[key] >= fraction * final)


def plot_runs(folders: list[Path], out: Path, title: str | None = None) -> Path:
    return plot_curves([run_curves(f) for f in folders], out, title)


def plot_curves(curves: list[dict], out: Path, title: str | None = None) -> Path:
    """Training loss, cross-entropy term and test metric by epoch, a line per run (`run_curves` / `curves_of`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("plots need matplotlib: pip install 'kdforge[logging]'") from None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for c in curves:
        axes[0].plot(c["epoch"], c["loss"], marker=".", label=c["label"])
        if all(v is not None for v in c["ce"]):
            axes[1].plot(c["epoch"], c["ce"], marker=".", label=c["label"])
        axes[2].plot(c["eval_epoch"], c["test"], marker=".", label=c["label"])
    for ax, name in zip(axes, ("training loss (all terms, epoch mean)", "cross-entropy term (weighted)",
                               curves[0]["test_axis"])):
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
