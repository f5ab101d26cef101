"""Run outputs: metrics.jsonl (whole-line records), TensorBoard scalars, and console lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kdforge.fileio import append_line


class RunLogger:
    def __init__(self, folder: Path, tensorboard: bool = True, enabled: bool = True, echo=None):
        self.folder = Path(folder)
        self.enabled = enabled
        self.echo = echo if echo is not None else (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.folder / "tb"))
            except Exception:  # tensorboard not installed: metrics.jsonl still has everything
                self.writer = None

    def record(self, kind: str, step: int, values: dict) -> None:
        if not self.enabled:
            return
        append_line(self.folder / "metrics.jsonl", json.dumps({"type": kind, "step": step, **values}))
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)

    def info(self, message: str) -> None:
        if self.enabled:
            self.echo(message)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
