"""What is specific to a task, behind one object, so that the trainer stays task-agnostic.

A task says how a model's outputs on an evaluation stream become metrics, and which metric is primary (what the
best epoch is selected on and what suite tables report). Image classification is the task kdforge trains today;
a second task (detection) implements the same three members.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn

from kdforge.collective import all_reduce_
from kdforge.engine.run import autocast


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

    def evaluate(self, model: nn.Module, stream, device: torch.device, amp: bool = False) -> dict:
        return evaluate(model, stream, device, amp)
