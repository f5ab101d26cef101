"""What is specific to a task, behind one object, so that the trainer stays task-agnostic.

A task builds the run's data, models and step path (`setup`), runs one step's loss (`step`), turns a model's
outputs on an evaluation stream into metrics (`evaluate`), and names its primary metric (what the best epoch is
selected on and what suite tables report). Image classification lives here; object detection
(`kdforge.detection.task`) implements the same members. `TrainConfig.task` picks one from `TASKS`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn

from kdforge.collective import all_reduce_
from kdforge.engine.run import autocast
from kdforge.errors import ConfigError
from kdforge.registry import Registry


@torch.no_grad()
def evaluate(model: nn.Module, stream, device: torch.device, amp: bool = False) -> dict:
    """Top-1 / top-5 accuracy (%) and mean cross-entropy over a whole stream; one host read at the end."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(4, device=device, dtype=torch.float64)  # loss sum, top1, top5, count
    for batch in stream.epoch(0):
        with autocast(device, amp):
            logits = model(batch.input).float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top.eq(batch.target.view(-1, 1))
        totals += torch.stack([
            nn.functional.cross_entropy(logits, batch.target, reduction="sum").double(),
            hits[:, 0].sum().double(), hits.any(dim=1).sum().double(),
            torch.full((), float(batch.target.numel()), device=device, dtype=torch.float64),
        ])
    model.train(was_training)
    all_reduce_(totals)  # each rank evaluated its own share of the split
    loss, top1, top5, count = totals.tolist()
    count = max(count, 1.0)
    return {"top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count, "loss": loss / count}


class ClassificationTask:
    """Image classification: logits against integer labels; top-1 / top-5 accuracy (%) and cross-entropy."""

    name: ClassVar[str] = "classification"
    primary: ClassVar[str] = "top1"  # the metric the best epoch is selected on
    metric_label: ClassVar[str] = "top-1"
    line_label: ClassVar[str] = ""  # before the test figure in the per-epoch log line
    summary_metrics: ClassVar[tuple[str, ...]] = ("top1", "top5")  # reported as <name>_last in summary.json
    compilable: ClassVar[bool] = True
    fits_training_set: ClassVar[bool] = True  # the summary's train_top1: accuracy on the clean training images
    caches_teacher_outputs: ClassVar[bool] = True  # the teacher's outputs depend on the batch alone: replayable

    def setup(self, trainer) -> None:
        from kdforge.engine.classification import setup_classification

        setup_classification(trainer)

    def step(self, trainer, batch, state):
        """(the Distiller's output, the labels the meter scores its logits against) for one training batch."""
        from kdforge.engine.classification import classification_step

        return classification_step(trainer, batch, state)

    def evaluate(self, model: nn.Module, stream, device: torch.device, amp: bool = False) -> dict:
        return evaluate(model, stream, device, amp)

    def identity(self, cfg) -> dict:
        """What a checkpoint records beyond the architecture and classes, to rebuild its model."""
        return {}


TASKS: Registry[type] = Registry("task")
TASKS.add("classification", ClassificationTask)


def task_for(name: str):
    """The task object `TrainConfig.task` names; detection's module is imported on first use (torchvision)."""
    if name == "detection" and name not in TASKS:
        import kdforge.detection.task  # noqa: F401  (registers it)
    try:
        return TASKS.get(name)()
    except ConfigError:
        raise ConfigError(f"unknown task {name!r}: choose classification or detection") from None
