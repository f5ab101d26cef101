"""The method contract.

A method declares what it needs (a teacher, feature taps, dataset indices, extra trainable modules)
and maps one step's inputs to named, already-weighted loss terms; the trainer sums them.
Its hyper-parameters live in a `Config` dataclass next to it, validated at construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdforge.data.memory import Batch


class ModelOutput(NamedTuple):
    logits: torch.Tensor
    features: dict  # tap name -> tensor (e.g. "embedding", "stage0".."stageN")


class StepState(NamedTuple):
    epoch: int  # 0-based
    step: int  # global optimiser step
    epoch_progress: float  # epochs done as a real number (epoch + fraction), for warm-ups


@dataclass
class MethodContext:
    """What a method may look at when it is built."""

    num_classes: int
    student: nn.Module
    teacher: nn.Module | None
    label_smoothing: float = 0.0
    epochs: int = 1
    steps_per_epoch: int = 1
    dataset_size: int = 0
    device: torch.device = torch.device("cpu")
    input_shape: tuple[int, ...] = (3, 32, 32)  # one sample (C, H, W), for dummy forwards that size adapters
    world_size: int = 1  # processes under torchrun


@dataclass
class NoConfig:
    pass


class Method(nn.Module):
    """Base class: subclasses set the class attributes and implement `forward`.

    Submodules of a method (projection heads, adapters) are trained with the student; the teacher is
    never a submodule, so it is neither saved with the method nor updated.
    """

    Config: ClassVar[type] = NoConfig
    needs_teacher: ClassVar[bool] = False
    teacher_classes_may_differ: ClassVar[bool] = False  # relation-based methods work across class sets
    student_taps: ClassVar[tuple[str, ...]] = ()  # symbolic taps: "embedding", "stages"
    teacher_taps: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    def __init__(self, cfg, ctx: MethodContext):
        super().__init__()
        self.cfg = cfg
        self.label_smoothing = ctx.label_smoothing

    def cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, label_smoothing=self.label_smoothing)

    def forward(self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None,
                state: StepState) -> dict[str, torch.Tensor]:
        raise NotImplementedError
