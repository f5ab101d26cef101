"""Building and loading models: a zoo / timm name to a module, a checkpoint to a ready model, a teacher for a run.

`load_model(checkpoint)` is the one way a saved model comes back (the trainer's teacher, `kdforge eval`, `export`,
the few-shot protocol and the benches use it)."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
import torch.nn as nn

from kdforge.config import TrainConfig
from kdforge.engine.checkpoint import load_into, load_weights
from kdforge.errors import ConfigError
from kdforge.models import MODELS, create_model
from kdforge.models.timm_models import is_timm, timm_model


def load_model(checkpoint: str | Path, arch: str | None = None, num_classes: int | None = None,
               in_channels: int = 3, image_size: int | None = None) -> nn.Module:
    """The model a checkpoint holds (a kdforge run folder or checkpoint, `.safetensors`, or a torch state dict),
    weights loaded, in eval mode. `arch` is needed when the file does not name its architecture; the class count
    is read from the classifier's weights unless given."""
    state, meta = load_weights(checkpoint)
    arch = arch or meta.get("arch")
    if not arch:
        raise ConfigError(f"{checkpoint} does not name its architecture: pass arch=MODEL_NAME (--model)")
    width = classifier_width(state) or num_classes or meta.get("num_classes")
    if width is None:
        raise ConfigError(f"{checkpoint} has no classifier weights to count its classes from: pass num_classes")
    model = build_model(arch, int(width), in_channels, image_size)
    load_into(model, state, str(checkpoint))
    return model.eval()


def load_teacher(cfg: TrainConfig, classes: list[str], in_channels: int,
                 classes_may_differ: bool = False, image_size: int | None = None) -> tuple[nn.Module, str, bool]:
    """(teacher, architecture, whether it was trained on exactly the student's classes)."""
    if not cfg.teacher_checkpoint:
        raise ConfigError(f"method {cfg.method!r} needs a teacher: set teacher_checkpoint=PATH (a run folder or file)")
    state, meta = load_weights(cfg.teacher_checkpoint)
    arch = cfg.teacher or meta.get("arch")
    if not arch:
        raise ConfigError(f"{cfg.teacher_checkpoint} does not name its architecture: set teacher=MODEL_NAME")
    width = classifier_width(state) or len(classes)
    recorded = meta.get("classes")  # kdforge checkpoints record their class names; foreign ones do not
    same_classes = list(recorded) == list(classes) if recorded is not None else width == len(classes)
    if not same_classes and not classes_may_differ:
        if width != len(classes):
            raise ConfigError(f"teacher checkpoint has {width} classes but dataset {cfg.data.dataset} has "
                              f"{len(classes)}; use a teacher trained on the same classes")
        raise ConfigError(f"teacher was trained on classes {list(recorded)[:6]}... but the data has "
                          f"{list(classes)[:6]}...; use a teacher trained on the same classes")
    teacher = build_model(arch, width, in_channels, image_size)
    load_into(teacher, state, str(cfg.teacher_checkpoint))
    return teacher, arch, same_classes


def classifier_width(state: dict) -> int | None:
    last_linear = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    return int(last_linear[-1].shape[0]) if last_linear else None


def build_model(name: str, num_classes: int, in_channels: int, image_size: int | None = None) -> nn.Module:
    if is_timm(name):
        return timm_model(name, num_classes, in_channels, image_size)
    builder = MODELS.get(name)
    takes_channels = "in_channels" in inspect.signature(builder).parameters
    if not takes_channels and in_channels != 3:
        raise ConfigError(f"model {name!r} takes 3-channel images, the dataset has {in_channels} channel(s); "
                          "pick a model made for it (kdforge list models)")
    return create_model(name, num_classes, in_channels=in_channels) if takes_channels else create_model(name, num_classes)


def check_compatible(model: nn.Module, name: str, sample: torch.Tensor) -> None:
    """One forward pass on two real inputs, so an architecture that cannot read the data fails now, clearly."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(sample)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise ConfigError(f"model {name!r} cannot take this dataset's {tuple(sample.shape[1:])} inputs ({first}); "
                          "pick a model made for this input size") from None
    finally:
        model.train(was_training)
