"""Learning-rate schedules as a pure function of the step (computed on the host, no device sync)."""

from __future__ import annotations

import bisect
import math

from kdforge.config import OptimConfig


def learning_rate(cfg: OptimConfig, step: int, steps_per_epoch: int, epochs: int) -> float:
    """The learning rate for optimiser step `step` (0-based)."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        epoch = step // max(steps_per_epoch, 1)
        return cfg.lr * cfg.gamma ** bisect.bisect_right(sorted(cfg.milestones), epoch)
    total = max(epochs * steps_per_epoch - warmup, 1)
    progress = min((step - warmup) / total, 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
