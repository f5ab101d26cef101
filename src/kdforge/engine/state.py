"""What a checkpoint holds and how a run comes back from one: weights, method, optimiser, progress, meter and RNG
(a Trainer mixin); `Progress` is the position and bookkeeping that travel with it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import torch

from kdforge.config import to_dict
from kdforge.engine.checkpoint import load_into, save_checkpoint
from kdforge.errors import UserError


@dataclass
class Progress:
    epoch: int = 0  # epochs fully done
    batch: int = 0  # batches done inside the current epoch
    step: int = 0  # optimiser steps done in total
    best_top1: float = -1.0
    best_test_top1: float = -1.0
    best_epoch: int = -1
    max_test_top1: float = -1.0  # the best test top-1 of any epoch (what a "best (test)" column shows)
    train_seconds: float = 0.0
    train_images: int = 0
    wall_seconds: float = 0.0  # wall time of earlier sittings, up to their last checkpoint


class CheckpointMixin:
    def _identity(self) -> dict:
        return {"format": "kdforge", "arch": self.cfg.student, "num_classes": self.data.num_classes,
                "classes": list(self.data.classes), "dataset": self.cfg.data.dataset,
                # the precision the run evaluated in (amp=auto resolves per machine): `kdforge eval` reads it back
                "amp": self.amp, **self.task.identity(self.cfg)}

    def _payload(self) -> dict:
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            **self._identity(), "model": self.student.state_dict(), "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(), "progress": self._progress_to_save(),
            "meter": self.meter.state_dict(), "rng": rng, "teacher_top1": self.teacher_top1,
            "config": json.dumps(to_dict(self.cfg), sort_keys=True),
        }

    def _progress_to_save(self) -> dict:
        # a resumed run reports the wall time of all its sittings, not only of the last one
        progress = dict(vars(self.progress))
        progress["wall_seconds"] += time.perf_counter() - self._sitting_start
        return progress

    def _save(self) -> None:
        if self.dist.is_main:  # every rank holds the same state; one writes it
            save_checkpoint(self.folder, self._payload())

    def _restore(self, ckpt: dict) -> None:
        saved = json.loads(ckpt["config"])
        now = to_dict(self.cfg)
        for key in ("method", "student", "seed", "epochs"):
            if saved.get(key) != now.get(key):
                raise UserError(f"cannot resume {self.folder}: it was run with {key}={saved.get(key)!r}, "
                                f"now {key}={now.get(key)!r}; use another out= folder")
        load_into(self.student, ckpt["model"], f"{self.folder}/checkpoint.pt")
        self.method.load_state_dict(ckpt["method"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        for group, scale in zip(self.optimizer.param_groups, self._lr_scales):
            group["lr_scale"] = scale  # checkpoints from before learning-rate scales lack the key
        self.progress = Progress(**ckpt["progress"])
        self.meter.load_state_dict(ckpt["meter"])
        self.teacher_top1 = ckpt.get("teacher_top1")
        torch.set_rng_state(ckpt["rng"]["cpu"])
        if "cuda" in ckpt["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)
