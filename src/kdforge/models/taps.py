"""Feature taps: read intermediate activations through forward hooks addressed by module path.

A path names a module (`layer2`, `blocks.4`); the suffix `:input` reads the module's input instead of
its output (e.g. `fc:input` is the embedding of a torchvision ResNet), and `:preact` a stage's output before its
final ReLU (see `PreActivation`). Models are never rewritten.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import torch
import torch.nn as nn

from kdforge.errors import ConfigError
from kdforge.models.base import model_info


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise ConfigError(
            f"{type(model).__name__} has no module {path!r}; print(model) lists the module paths"
        ) from None


class FeatureTaps:
    """Registers hooks for named taps; `outputs` holds the latest forward pass's tensors (None before the first).

    Its keys are fixed at construction: a compiled forward guards on the keys of the dict its hooks write, so a
    dict that started empty and then filled would compile every pass twice."""

    def __init__(self, model: nn.Module, taps: Mapping[str, str]):
        self.outputs: dict[str, torch.Tensor | None] = dict.fromkeys(taps)
        self._handles = []
        for name, spec in taps.items():
            path, _, where = spec.partition(":")
            module = resolve_module(model, path)
            if where == "input":
                self._handles.append(module.register_forward_pre_hook(self._keep_input(name)))
            elif where in ("", "output"):
                self._handles.append(module.register_forward_hook(self._keep_output(name)))
            elif where == "preact":
                self._handles += PreActivation(module, name, self.outputs).handles
            else:
                raise ConfigError(f"tap {spec!r}: the part after ':' must be 'input', 'output' or 'preact'")

    def _keep_output(self, name: str):
        def hook(module, inputs, output):
            self.outputs[name] = output

        return hook

    def _keep_input(self, name: str):
        def hook(module, inputs):
            self.outputs[name] = inputs[0]

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


class PreActivation:
    """A stage's output before its final ReLU, read through hooks: when the stage's last block ends in an `nn.ReLU`
    module whose output is the stage's output, its input is the pre-activation (ReLUs of that block run out of
    place, so the input survives); otherwise (a linear bottleneck, a pre-activation block, a functional ReLU) the
    stage's own output is what there is, and it is kept."""

    def __init__(self, stage: nn.Module, name: str, outputs: dict):
        last = stage[-1] if isinstance(stage, nn.Sequential) and len(stage) else stage
        relus = [m for m in last.modules() if isinstance(m, nn.ReLU)]
        for relu in relus:
            relu.inplace = False
        seen: dict = {}

        def before(module, inputs):
            seen["input"] = inputs[0]

        def after(module, inputs, output):
            seen["output"] = output

        def stage_done(module, inputs, output):
            outputs[name] = seen["input"] if seen.get("output") is output else output
            seen.clear()

        self.handles = [h for relu in relus for h in (relu.register_forward_pre_hook(before),
                                                     relu.register_forward_hook(after))]
        self.handles.append(stage.register_forward_hook(stage_done))


def standard_taps(model: nn.Module, wanted: tuple[str, ...]) -> dict[str, str]:
    """Map symbolic tap names (`embedding`, `stages`, `stage<i>`) to the model's declared module paths."""
    info = model_info(model)
    taps: dict[str, str] = {}
    for want in wanted:
        if "=" in want:  # NAME=PATH[:input|:output|:preact], a method's own tap on a module path
            name, _, spec = want.partition("=")
            taps[name] = spec
        elif want == "embedding":
            taps["embedding"] = info.embedding
        elif want in ("stages", "preact_stages"):
            if not info.stages:
                raise ConfigError(f"{type(model).__name__} declares no stages; this method needs stage features")
            if want == "stages":
                taps.update({f"stage{i}": path for i, path in enumerate(info.stages)})
            else:
                taps.update({f"preact{i}": f"{path}:preact" for i, path in enumerate(info.stages)})
        else:
            raise ConfigError(f"unknown tap {want!r}: use 'embedding', 'stages', 'preact_stages' or NAME=PATH")
    return taps


def flat_embedding(x: torch.Tensor) -> torch.Tensor:
    """Embeddings tapped before a flatten (B x C x 1 x 1) become B x C."""
    return x.flatten(1) if x.dim() > 2 else x


class ModelOutput(NamedTuple):
    logits: torch.Tensor
    features: dict  # tap name -> tensor (e.g. "embedding", "stage0".."stageN")


class TappedModel:
    """A model plus the feature taps a method asked for; calling it returns a `ModelOutput`.

    `runner` is what the forward pass goes through (the DistributedDataParallel wrapper under torchrun);
    the hooks sit on the model itself, so they fire either way."""

    def __init__(self, model: nn.Module, wanted: tuple[str, ...], runner: nn.Module | None = None):
        self.model = model
        self.runner = runner if runner is not None else model
        self.taps = FeatureTaps(model, standard_taps(model, wanted)) if wanted else None

    def __call__(self, x: torch.Tensor) -> ModelOutput:
        logits = self.runner(x)
        if self.taps is None:
            return ModelOutput(logits, {})
        features = dict(self.taps.outputs)
        if "embedding" in features:
            features["embedding"] = flat_embedding(features["embedding"])
        return ModelOutput(logits, features)
