"""Classification's part of a run: data, student and teacher, streams and the Distiller (`setup_classification`),
and one step's loss with the teacher-output cache (`classification_step`). The trainer calls them through
`ClassificationTask`; nothing here knows about the epoch loop, checkpoints or the optimiser."""

from __future__ import annotations

import torch

from kdforge.data import DatasetBundle, load_data
from kdforge.distiller import Distiller
from kdforge.engine.distributed import per_rank_batch
from kdforge.engine.models import build_model, check_compatible, load_teacher
from kdforge.errors import ConfigError
from kdforge.methods import METHODS


def setup_classification(t) -> None:
    """Sets the trainer's data, student, teacher, streams and distiller for an image-classification run."""
    cfg = t.cfg
    method_cls = METHODS.get(cfg.method)
    t.data: DatasetBundle = load_data(cfg.data, t.device)
    nc, channels = t.data.num_classes, t.data.in_channels
    size = t._input_shape()[-1]
    t.student = build_model(cfg.student, nc, channels, size).to(t.device)
    t.teacher, t.teacher_arch, t.teacher_same_classes = None, None, False
    if method_cls.uses_teacher(cfg.method_args):
        t.teacher, t.teacher_arch, t.teacher_same_classes = load_teacher(
            cfg, t.data.classes, channels, method_cls.teacher_classes_may_differ, size)
        t.teacher.to(t.device).eval().requires_grad_(False)
    probe = t.data.train.images[:2] if hasattr(t.data.train, "images") else None
    if probe is not None:
        probe = probe.float()
        check_compatible(t.student, cfg.student, probe)
        if t.teacher is not None:
            check_compatible(t.teacher, t.teacher_arch, probe)
    shard = {"rank": t.dist.rank, "world_size": t.dist.world_size}
    t.train_stream = t.data.stream("train", per_rank_batch(cfg.data.batch_size, t.dist), train=True,
                                   seed=cfg.seed, workers=cfg.data.workers, device=t.device, **shard)
    t.test_stream = t.data.stream("test", cfg.data.eval_batch_size, train=False, workers=cfg.data.workers,
                                  device=t.device, **shard)
    t.val_stream = t.data.stream("val", cfg.data.eval_batch_size, train=False, device=t.device, **shard) \
        if t.data.val is not None else None
    if len(t.train_stream) == 0:
        raise ConfigError(f"data.batch_size {cfg.data.batch_size} is larger than the training set "
                          f"({len(t.data.train)} images); lower it")
    t.channels_last = student_channels_last(cfg, t.device, t.decide_compile(cfg.epochs * len(t.train_stream)))
    layout = torch.channels_last if t.channels_last else torch.contiguous_format
    for m in (t.student, t.teacher):
        if m is not None:
            m.to(memory_format=layout)  # a no-op for contiguous models

    def build_student():  # a peer (DML, IC-KD online) in the student's layout
        return build_model(cfg.student, nc, channels, size).to(t.device, memory_format=layout)

    # the one step path users get too (kdforge.Distiller); the frozen teacher runs as a BatchNorm-folded copy
    t.distiller = Distiller(
        t.teacher, t.student, cfg.method, input_shape=t._input_shape(), num_classes=nc,
        epochs=cfg.epochs, steps_per_epoch=len(t.train_stream), dataset_size=len(t.data.train),
        train_labels=getattr(t.data.train, "labels", None), label_smoothing=cfg.label_smoothing,
        fold_teacher_bn=cfg.teacher_fold_bn, teacher_channels_last=teacher_channels_last(cfg, t.device, t.channels_last),
        world_size=t.dist.world_size, build_student=build_student, **cfg.method_args)


def student_channels_last(cfg, device: torch.device, compiled: bool) -> bool:
    """`channels_last: auto`: on for a run on CPU that runs eager (its step measured faster in channels_last across
    the zoo), off for one that compiles (contiguous compiled steps measured faster) and off other devices."""
    if cfg.channels_last != "auto":
        return bool(cfg.channels_last)
    return device.type == "cpu" and not compiled


def teacher_channels_last(cfg, device: torch.device, student_channels_last: bool) -> bool:
    """`teacher_channels_last: auto`: on CPU (measured faster there), elsewhere as the student's layout."""
    if cfg.teacher_channels_last != "auto":
        return bool(cfg.teacher_channels_last)
    return device.type == "cpu" or student_channels_last


def classification_step(t, batch, state):
    """The Distiller's output for one batch (the teacher's outputs replayed from or recorded into the cache), and
    the labels the meter scores the student's logits against."""
    x = batch.input.contiguous(memory_format=torch.channels_last) if t.channels_last else batch.input
    teacher_out = None
    if t.replaying:
        teacher_out = t.teacher_cache.lookup(batch.index)
    elif t.teacher is not None:
        teacher_out = t.distiller.teacher_outputs(x)
        if t.teacher_cache is not None:
            teacher_out = t.teacher_cache.record(batch.index, teacher_out)
    return t.distiller(x, batch.target, batch.index, state=state, teacher_output=teacher_out), batch.target
