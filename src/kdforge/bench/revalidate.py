"""A finished run's final weights on a validation split of another size: the same rule as the run's own split
(images outside the training subset, drawn by the run's subset seed), more images per class.

A suite's validation split is sized for choosing hyper-parameters cheaply during training (100 images per class:
about 1.4 points of standard error on one run's top-1 on CIFAR-10). A choice between settings whose effects are
that small needs more images; the training subset, the weights and the test split stay as they were. Each figure
is written to the run folder (`val-N.json`), so a second reading costs nothing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from kdforge.errors import ConfigError
from kdforge.fileio import atomic_write_json


def validation_top1(run: Path, val_per_class: int, device: str | None = None) -> float:
    """Top-1 (%) of the run's final weights on `val_per_class` validation images per class (on the GPU when there
    is one, unless `device` says otherwise)."""
    cached = Path(run) / f"val-{val_per_class}.json"
    if cached.exists():
        return float(json.loads(cached.read_text())["top1"])
    from kdforge.config import RUN_CONFIG, from_dict
    from kdforge.data import DataConfig, load_data
    from kdforge.engine.checkpoint import recorded_amp
    from kdforge.engine.models import load_model
    from kdforge.engine.task import evaluate

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    config = Path(run) / RUN_CONFIG
    if not config.exists():
        raise ConfigError(f"{run} has no config.json: not a finished kdforge run folder")
    recorded = json.loads(config.read_text())
    data = from_dict(DataConfig, recorded["config"]["data"], "config.data")
    bundle = load_data(dataclasses.replace(data, val_per_class=val_per_class), device)
    if bundle.val is None or bundle.notes:  # carved from the training subset: not a held-out split
        raise ConfigError(f"{run}: {val_per_class} validation images per class do not fit outside the training "
                          "subset; pass a smaller --val-per-class")
    images = getattr(bundle.val, "images", None)  # in memory: the images' own size; image folders: the config's
    size = images.shape[-1] if images is not None else data.image_size
    model = load_model(run, in_channels=bundle.in_channels, image_size=size).to(device)
    stream = bundle.stream("val", data.eval_batch_size, train=False, device=device)
    summary = Path(run) / "summary.json"
    amp = recorded_amp(json.loads(summary.read_text()) if summary.exists() else {}, recorded["config"])
    top1 = evaluate(model, stream, torch.device(device), amp)["top1"]
    atomic_write_json(cached, {"top1": top1, "val_per_class": val_per_class, "images": len(bundle.val.labels)})
    return top1

