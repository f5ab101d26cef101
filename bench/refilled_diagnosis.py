"""Why a REFILLED run lands where it does: what its stage-2 target can teach, and where its student stops.

For each two-stage `refilled` run folder (and the `ce` run of the same cell, when given), on the held-out
validation split carved from the training set (never the test set):

- the teacher's embedding-induced classifier: top-1 of argmax_k <f_t(x), c_k> over the student's classes, with
  the centres c_k built as stage 2 builds them (un-augmented training images); the mean entropy of p^T at tau2
  (as a fraction of log C) and the mean norm of f_t (the scores are not normalised, so the norm sets how sharp
  p^T is);
- the stage-1 student's nearest-class-mean top-1 at the checkpoint stage 2 started from;
- the final student's top-1 and its training-set fit (the last epoch's train top-1 and CE);
- the same for the `ce` student (its val top-1 only when it held out the same split).

    .venv/bin/python bench/refilled_diagnosis.py CELL=RUN[,CE_RUN] ... [--out results/refilled_diagnosis.md]

Nothing is trained here.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from refilled_protocols import model_of  # noqa: E402  (bench/ sibling: a model from a run folder or checkpoint)

from kdforge.config import TrainConfig, from_dict  # noqa: E402
from kdforge.data import load_data  # noqa: E402
from kdforge.engine.models import load_teacher  # noqa: E402
from kdforge.fileio import atomic_write_text  # noqa: E402
from kdforge.methods.refilled import class_centres  # noqa: E402
from kdforge.protocols import outputs  # noqa: E402


def run_config(run: Path) -> TrainConfig:
    return from_dict(TrainConfig, json.loads((run / "config.json").read_text())["config"])


def last_epoch(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("type") == "epoch"][-1]


def ncm_top1(student_train, student_val) -> float:
    _, emb, labels = student_train
    centres = class_centres(emb, labels, int(labels.max()) + 1)
    _, val_emb, val_labels = student_val
    return 100.0 * ((F.normalize(val_emb, dim=1) @ centres.T).argmax(1) == val_labels).float().mean().item()


def diagnose(refilled: Path, ce: Path | None) -> dict:
    cfg = run_config(refilled / "stage2")
    tau2 = float(cfg.method_args.get("tau2", 2.0))
    data = load_data(cfg.data)
    clean_train = data.stream("train", 1000, train=False)
    val = data.stream("val", 1000, train=False)
    teacher, _, _ = load_teacher(cfg, data.classes, data.in_channels, classes_may_differ=True)
    _, t_train, y_train = outputs(teacher, clean_train)
    _, t_val, y_val = outputs(teacher, val)
    centres = class_centres(t_train, y_train, data.num_classes)
    scores = t_val @ centres.T
    p_t = F.softmax(scores / tau2, dim=1)
    entropy = -(p_t * p_t.clamp_min(1e-12).log()).sum(1).mean().item() / math.log(data.num_classes)
    out = {"teacher_induced_val_top1": 100.0 * (scores.argmax(1) == y_val).float().mean().item(),
           "teacher_p_entropy": entropy, "teacher_embedding_norm": t_val.norm(dim=1).mean().item()}
    stage1 = model_of(refilled / "stage1" / "best.pt", data.in_channels)
    out["stage1_ncm_val_top1"] = ncm_top1(outputs(stage1, clean_train), outputs(stage1, val))
    for name, run in (("refilled", refilled / "stage2"), ("ce", ce)):
        if run is None:
            continue
        epoch = last_epoch(run)
        # a run that trained without the held-out split may have trained on its images: no val figure for it
        if run_config(run).data.val_per_class == cfg.data.val_per_class:
            logits, _, labels = outputs(model_of(run, data.in_channels), val)
            out[f"{name}_val_top1"] = 100.0 * (logits.argmax(1) == labels).float().mean().item()
        out[f"{name}_train_top1"] = epoch["train_top1"]
        out[f"{name}_train_ce"] = epoch.get("loss/ce", epoch.get("loss/total"))
    return out


COLUMNS = (("teacher_induced_val_top1", "teacher-induced classifier, val top-1"),
           ("teacher_p_entropy", "entropy of p^T / log C"), ("teacher_embedding_norm", "mean norm of f_t"),
           ("stage1_ncm_val_top1", "stage-1 NCM, val top-1"), ("refilled_val_top1", "refilled, val top-1"),
           ("refilled_train_top1", "refilled, last-epoch train top-1"), ("refilled_train_ce", "refilled, train CE"),
           ("ce_val_top1", "ce, val top-1"), ("ce_train_top1", "ce, last-epoch train top-1"),
           ("ce_train_ce", "ce, train CE"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cells", nargs="+", help="NAME=REFILLED_RUN[,CE_RUN]")
    parser.add_argument("--out", default="results/refilled_diagnosis.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    found = {}
    for cell in args.cells:
        name, _, runs = cell.partition("=")
        refilled, _, ce = runs.partition(",")
        found[name] = diagnose(Path(refilled), Path(ce) if ce else None)
        print(name, found[name], flush=True)
    lines = ["# REFILLED diagnosis", "", "Generated by `.venv/bin/python bench/refilled_diagnosis.py "
             + " ".join(args.cells) + "`. All accuracies on the held-out validation split carved from the "
             "training set (`data.val_per_class`), never the test set.", "",
             "| | " + " | ".join(found) + " |", "|---|" + "---|" * len(found)]
    for key, label in COLUMNS:
        lines.append(f"| {label} | " + " | ".join(f"{found[c][key]:.2f}" if key in found[c] else "" for c in found)
                     + " |")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(found, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
