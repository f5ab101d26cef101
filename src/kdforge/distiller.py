"""`kdforge.Distiller`: any registered method around a teacher and a student, for your own training loop.

    distiller = kdforge.Distiller(teacher, student, method="dkd", beta=2.0)
    optimizer = torch.optim.SGD(distiller.parameters(), lr=0.05, momentum=0.9)
    for inputs, targets in loader:
        out = distiller(inputs, targets)          # out.loss, out.terms (named, weighted), out.student.logits
        optimizer.zero_grad(); out.loss.backward(); optimizer.step()

kdforge's own trainer drives the same object (with its schedule, checkpoints and teacher-output cache around
it), so a method behaves the same in both. The teacher is frozen and is not a submodule: `.parameters()` and
`.state_dict()` hold the student and the method's own modules (projection heads, adapters, memory banks) only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn

from kdforge.data.inmemory import Batch
from kdforge.errors import ConfigError
from kdforge.methods import METHODS, MethodContext, StepState, build_method
from kdforge.methods.base import Method, Preparation
from kdforge.models.fold import fold_batchnorm
from kdforge.models.taps import ModelOutput, TappedModel


class DistillerOutput(NamedTuple):
    loss: torch.Tensor  # the sum of the terms: what to back-propagate
    terms: dict  # term name -> weighted scalar tensor (e.g. {"ce": ..., "kd": ...})
    student: ModelOutput  # the student's logits (and the features the method tapped)


class Distiller(nn.Module):
    """A registered method (`kdforge list methods`) wrapped around a frozen teacher and a trainable student.

    Keyword arguments not listed below are the method's own hyper-parameters (its `Config` fields, e.g.
    `temperature=4`). The rest tell the method what it may need to know when it is built:

    - `input_shape`: one sample's (C, H, W), for methods that size adapters with a dummy forward; read from a
      timm model's configuration, else (3, 32, 32);
    - `num_classes`: read from the student's output on a dummy input when not given;
    - `epochs`, `steps_per_epoch`: the schedule's length, for methods with warm-ups;
    - `dataset_size`, `train_labels`: for methods with per-sample memories (`crd`, `ickd`); call the distiller
      with each batch's dataset indices then;
    - `fold_teacher_bn`: run the frozen teacher as a copy with BatchNorm folded into its convolutions (exact up
      to rounding, a faster forward);
    - `teacher_channels_last`: that folded copy in channels_last memory layout, its inputs converted (the same
      outputs up to rounding; faster on CPU). The caller's teacher is never converted.
    """

    def __init__(self, teacher: nn.Module | None, student: nn.Module, method: str = "kd", *,
                 input_shape: tuple[int, ...] | None = None, num_classes: int | None = None, epochs: int = 1,
                 steps_per_epoch: int = 1, dataset_size: int = 0, train_labels: torch.Tensor | None = None,
                 label_smoothing: float = 0.0, fold_teacher_bn: bool = True, teacher_channels_last: bool = False,
                 world_size: int = 1,
                 build_student: Callable[[], nn.Module] | None = None, **method_args):
        super().__init__()
        method_cls = METHODS.get(method)
        if method_cls.uses_teacher(method_args) and teacher is None:
            raise ConfigError(f"method {method!r} needs a teacher; pass one as Distiller(teacher, student, ...)")
        self.method_name = method
        self.student = student
        device = _device_of(student)
        shape = tuple(input_shape or _default_input_shape(student))
        ctx = MethodContext(
            num_classes=num_classes or _count_classes(student, shape, device), student=student, teacher=teacher,
            label_smoothing=label_smoothing, epochs=epochs, steps_per_epoch=steps_per_epoch, dataset_size=dataset_size,
            train_labels=train_labels, device=device, input_shape=shape, world_size=world_size,
            build_student=build_student)
        # the teacher is frozen and never a submodule: neither trained, nor saved with the student
        object.__setattr__(self, "teacher", teacher)
        object.__setattr__(self, "teacher_forward", teacher)
        self.teacher_folded = 0
        if teacher is not None:
            teacher.eval().requires_grad_(False)
            if fold_teacher_bn:  # before the method is built: the probe draws from the RNG the method's init reads
                probe = torch.randn(2, *shape, device=_device_of(teacher))
                folded, self.teacher_folded = fold_batchnorm(teacher, probe)
                object.__setattr__(self, "teacher_forward", folded)
        # only a copy of our own changes layout (a teacher that could not be folded is the caller's module)
        self.teacher_channels_last = bool(teacher_channels_last and self.teacher_folded)
        if self.teacher_channels_last:
            self.teacher_forward.to(memory_format=torch.channels_last)
        # methods that read the teacher's parameters (KR) are given the original, not the folded copy
        self.method: Method = build_method(method, method_args, ctx).to(device)
        self.wrap_student(None)
        self.teacher_view = TappedModel(self.teacher_forward, self.method.teacher_taps) if teacher is not None else None
        self.needs_indices = self.method.needs_indices
        self.prepared = not self.method.needs_preparation()
        self.step = 0  # optimiser steps seen, for the method's warm-ups when the caller gives no StepState
        self.steps_per_epoch = max(1, steps_per_epoch)

    def wrap_student(self, runner: nn.Module | None) -> None:
        """Run the student's forward through `runner` (e.g. its DistributedDataParallel wrapper); hooks stay on
        the student itself."""
        previous = getattr(self, "student_view", None)
        if previous is not None and previous.taps is not None:
            previous.taps.remove()  # one set of hooks on the student, not one per view
        self.student_view = TappedModel(self.student, self.method.student_taps, runner)

    # ------------------------------------------------------------------ what the optimiser trains
    def parameters(self, recurse: bool = True):
        """The trainable parameters: the student's and the method's own (frozen copies inside a method excluded)."""
        return (p for p in super().parameters(recurse) if p.requires_grad)

    def param_groups(self) -> list[dict]:
        """The trainable parameters grouped by the learning-rate scale the method asks for (`lr_scale`, 1 by
        default), the method's own parameters last; multiply a schedule's rate by each group's scale."""
        scales = self.method.student_lr_scales(self.student)
        groups: dict[float, list] = {}
        for name, p in self.student.named_parameters():
            if p.requires_grad:
                scale = next((v for prefix, v in scales.items() if name == prefix or name.startswith(prefix + ".")),
                             scales.get("", 1.0))
                groups.setdefault(scale, []).append(p)
        own = [p for p in self.method.parameters() if p.requires_grad]
        if own:
            groups.setdefault(1.0, []).extend(own)
        return [{"params": params, "lr_scale": scale} for scale, params in groups.items()]

    # ------------------------------------------------------------------ one step
    def prepare(self, clean_batches: Iterable, cache_dir: str | Path | None = None) -> None:
        """For methods that read the whole training set once before training (`ickd` offline: the teacher's
        memory bank; `refilled` stage 2: class centres): `clean_batches` yields (inputs, targets, indices) over
        the training set without augmentation, indices covering 0..dataset_size-1."""
        from kdforge.data.sources import cache_dir as default_cache_dir
        from kdforge.memory.incontext import fingerprint

        device = _device_of(self.student)
        batches = [Batch(torch.as_tensor(i).to(device), x.to(device), torch.as_tensor(y).to(device))
                   for x, y, i in clean_batches]
        data_key = fingerprint(*(t for b in batches for t in (b.input, b.target, b.index)))
        self.prepare_with(Preparation(
            TappedModel(self.teacher_forward, ("embedding",)) if self.teacher is not None else None,
            _ListStream(batches), contextlib.nullcontext, Path(cache_dir) if cache_dir else default_cache_dir(),
            fingerprint(self.teacher.state_dict()) if self.teacher is not None else "", data_key))

    def prepare_with(self, prep: Preparation) -> None:
        if type(self.method).prepare is not Method.prepare:  # hashing teacher and data costs a little: only on use
            self.method.prepare(prep)
        self.prepared = True

    @torch.no_grad()
    def teacher_outputs(self, inputs: torch.Tensor) -> ModelOutput | None:
        """The frozen teacher's logits and the features the method taps (None without a teacher)."""
        if self.teacher_view is None:
            return None
        if not self.teacher_channels_last:
            return self.teacher_view(inputs)
        out = self.teacher_view(inputs.contiguous(memory_format=torch.channels_last))
        # back to the standard layout: what the method reads is then laid out exactly as a teacher-output cache
        # replays it, and strides can change the rounding of the ops that read it
        return ModelOutput(out.logits.contiguous(), {k: v.contiguous() for k, v in out.features.items()})

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None, *,
                state: StepState | None = None, teacher_output: ModelOutput | None = None) -> DistillerOutput:
        """One step's loss: the teacher's forward (unless `teacher_output` is given, e.g. from a cache), the
        student's, and the method's weighted terms."""
        if not self.prepared:
            raise ConfigError(f"method {self.method_name!r} reads the training set once before training: call "
                              "distiller.prepare(clean_batches) first")
        if indices is None:
            if self.needs_indices:
                raise ConfigError(f"method {self.method_name!r} keeps per-sample memories: call "
                                  "distiller(inputs, targets, indices) with each sample's dataset index")
            indices = torch.arange(targets.shape[0], device=targets.device)
        if self.training:
            self.method.after_step()  # a memory update the caller's loop did not ask for yet (idempotent)
        if state is None:
            state = StepState(self.step // self.steps_per_epoch, self.step, self.step / self.steps_per_epoch)
            self.step += self.training
        if teacher_output is None:
            teacher_output = self.teacher_outputs(inputs)
        student_output = self.student_view(inputs)
        terms = self.method(Batch(indices, inputs, targets), student_output, teacher_output, state)
        return DistillerOutput(sum(terms.values()), terms, student_output)

    def get_extra_state(self) -> dict:
        return {"step": self.step}  # a resumed loop continues its warm-ups where it stopped

    def set_extra_state(self, state: dict) -> None:
        self.step = int(state["step"])

    def after_step(self) -> None:
        """Memory updates the method defers until the optimiser has stepped (CRD's banks); the next call does it
        otherwise."""
        self.method.after_step()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher_forward.eval()  # the teacher stays in eval mode (BatchNorm statistics frozen)
        return self


class _ListStream:
    """Batches held in memory, served as a stream's single epoch (what `Method.prepare` reads)."""

    def __init__(self, batches: list[Batch]):
        self.batches = batches

    def epoch(self, epoch: int = 0):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _device_of(model: nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def _default_input_shape(model: nn.Module) -> tuple[int, ...]:
    timm_size = getattr(model, "pretrained_cfg", {}).get("input_size")  # timm models declare theirs
    return tuple(timm_size) if timm_size else (3, 32, 32)


@torch.no_grad()
def _count_classes(model: nn.Module, shape: tuple[int, ...], device: torch.device) -> int:
    was_training = model.training
    model.eval()
    try:
        return int(model(torch.zeros(2, *shape, device=device)).shape[1])
    finally:
        model.train(was_training)
