"""Training a config to the end: one run, or a method's stages in sequence (REFILLED), each stage its own
resumable run in a sub-folder."""

from __future__ import annotations

import json
import os
import time

from kdforge.config import TrainConfig, from_dict, to_dict
from kdforge.engine.trainer import Trainer
from kdforge.errors import UserError
from kdforge.fileio import atomic_write_json
from kdforge.methods import METHODS


def stage_configs(cfg: TrainConfig) -> list[tuple[str, TrainConfig]]:
    """Each stage's config: the method's per-stage overrides laid over `cfg`, the stage's own sub-folder, and the
    previous stage's selected weights (best.pt) where the method asks for them."""
    if cfg.task != "classification":  # staged methods are classification's (REFILLED)
        return []
    stages = []
    for name, overrides in METHODS.get(cfg.method).pipeline(cfg):
        overrides = dict(overrides)
        start = overrides.pop("init_from_stage", None)
        merged = _merge(to_dict(cfg), overrides)
        merged["out"] = str(cfg.run_dir / name)
        if start:
            merged["init_checkpoint"] = str(cfg.run_dir / start / "best.pt")
        stages.append((name, from_dict(TrainConfig, merged)))
    return stages


def _merge(base: dict, over: dict) -> dict:
    merged = dict(base)
    for key, value in over.items():
        merged[key] = _merge(base.get(key) or {}, value) if isinstance(value, dict) else value
    return merged


def train(cfg: TrainConfig, resume: bool = False, echo=None) -> dict:
    """Train `cfg` to the end (or resume it) and return its summary (also written to summary.json).

    A method trained in stages (REFILLED) runs each stage as its own resumable run in a sub-folder of the run
    folder; the run folder's summary.json is the last stage's, with every stage's summary under "stages"."""
    stages = stage_configs(cfg)
    if not stages:
        return Trainer(cfg, resume=resume, echo=echo).fit()
    folder = cfg.run_dir
    started = [name for name, sub in stages if (sub.run_dir / "checkpoint.pt").exists()
               or (sub.run_dir / "checkpoint.prev.pt").exists()]
    if started and not resume:
        raise UserError(f"run folder {folder} already holds a run (stage {started[0]}); pass --resume to continue "
                        "it or choose another out=")
    wall_start, summaries = time.perf_counter(), {}
    for name, sub in stages:
        done = sub.run_dir / "summary.json"
        if done.exists():
            summaries[name] = json.loads(done.read_text())
            continue
        if echo:
            echo(f"{cfg.method}: stage {name} -> {sub.run_dir}")
        last = name == stages[-1][0]
        summaries[name] = Trainer(sub, resume=resume, echo=echo, keep_process_group=not last).fit()
    # the best epoch is the last stage's (an earlier stage may train no classifier); epochs count every stage
    summary = {**summaries[stages[-1][0]], "config": to_dict(cfg), "stages": summaries,
               "epochs": sum(s["epochs"] for s in summaries.values()),
               "wall_seconds": sum(s["wall_seconds"] for s in summaries.values()),
               "pipeline_wall_seconds": time.perf_counter() - wall_start}
    if int(os.environ.get("RANK", "0")) == 0:
        atomic_write_json(folder / "summary.json", summary)
    return summary
