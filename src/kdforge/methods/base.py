"""The method contract.

A method declares what it needs (a teacher, feature taps, dataset indices, extra trainable modules)
and maps one step's inputs to named, already-weighted loss terms; the trainer sums them.
Its hyper-parameters live in a `Config` dataclass next to it, validated at construction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdforge.data.inmemory import Batch
from kdforge.models.taps import ModelOutput, TappedModel


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
    train_labels: torch.Tensor | None = None  # (dataset_size,) labels by dataset index, for class-aware sampling
    device: torch.device = torch.device("cpu")
    input_shape: tuple[int, ...] = (3, 32, 32)  # one sample (C, H, W), for dummy forwards that size adapters
    world_size: int = 1  # processes under torchrun
    build_student: Callable[[], nn.Module] | None = None  # a fresh, randomly initialised student (peers)


@dataclass
class Preparation:
    """What a method may use once, before training (and again on resume): the frozen teacher tapped for its
    embedding, an un-augmented in-order pass over the training set, and where to cache what it derives."""

    teacher: TappedModel | None
    clean_train: object  # a stream: .epoch(0) yields Batches in index order, no augmentation
    autocast: Callable[[], contextlib.AbstractContextManager]
    cache_dir: Path
    teacher_key: str  # hash of the teacher's weights
    data_key: str  # hash of the training images and labels
    is_main: bool = True  # only the main process writes caches
    log: Callable[[str], None] = print


@dataclass
class EvalContext:
    student: nn.Module
    clean_train: object  # un-augmented, in-order pass over the training set
    val: object | None
    test: object
    autocast: Callable[[], contextlib.AbstractContextManager]


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
    needs_indices: ClassVar[bool] = False  # per-sample memories read each batch's dataset indices
    # symbolic taps ("embedding", "stages", "preact_stages") or NAME=PATH; an instance may set its own
    student_taps: tuple[str, ...] = ()
    teacher_taps: tuple[str, ...] = ()
    description: ClassVar[str] = ""

    def __init__(self, cfg, ctx: MethodContext):
        super().__init__()
        self.cfg = cfg
        self.label_smoothing = ctx.label_smoothing

    @classmethod
    def uses_teacher(cls, args: dict) -> bool:
        """Whether a run with these method_args needs a teacher (a method whose modes differ overrides it)."""
        return cls.needs_teacher

    def settings(self) -> dict:
        """Every argument this instance trains with, defaults included (a run's summary records it)."""
        from kdforge.config import to_dict

        return to_dict(self.cfg)

    def prepare(self, prep: Preparation) -> None:
        """Called once before training (and on resume) with the teacher and a clean pass over the data."""

    def needs_preparation(self) -> bool:
        """Whether this instance's `prepare` must run before its first step (it reads the whole training set)."""
        return False

    @classmethod
    def pipeline(cls, cfg) -> list[tuple[str, dict]]:
        """For a method trained in stages: [(stage name, overrides), ...] run in sequence, each in its own
        resumable sub-folder; empty for a one-stage method. The overrides are a nested dict of config values
        laid over the run's config (the engine builds each stage's config from them); `init_from_stage: NAME`
        starts a stage from that earlier stage's selected weights."""
        return []

    # Per-epoch evaluation beyond top-1: metrics named here are added to each eval record, and `select_on`
    # (when set on the instance) names the one that picks the best epoch; `keeps_best` saves its weights.
    select_on: str | None = None
    keeps_best: bool = False

    def after_step(self) -> None:
        """Called once the optimiser has stepped: where a method updates memories its loss read this step, so that
        the backward pass never needs a copy of them."""

    def modules_to_compile(self) -> list[nn.Module]:
        """Networks this method runs every step beside the student whose forward a compiled run compiles too:
        peers, or heads as costly as the student, such as ReviewKD's fusion modules (small heads stay eager)."""
        return []

    def student_lr_scales(self, student: nn.Module) -> dict[str, float]:
        """Learning-rate multipliers for the student's parameters by module path ("" = every other one)."""
        return {}

    def evaluate_extra(self, ctx: EvalContext) -> dict[str, float]:
        return {}

    def cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, label_smoothing=self.label_smoothing)

    def forward(self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None,
                state: StepState) -> dict[str, torch.Tensor]:
        raise NotImplementedError
