"""Object detection on the trainer's task seam: COCO-format data, a torchvision Faster R-CNN + FPN student (and a
teacher from a detection run's checkpoint), the detection distillation terms as the step, and COCO box AP
(pycocotools' COCOeval) as the metrics. Checkpoints, resume, signals, progress, TensorBoard and torchrun are the
trainer's, as for classification."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn

from kdforge.config import to_dict
from kdforge.engine.distributed import per_rank_batch
from kdforge.engine.run import autocast
from kdforge.engine.task import TASKS
from kdforge.errors import ConfigError

METRICS = ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l")


def detector_args(cfg) -> dict:
    return to_dict(cfg.detector)


class DetectionTask:
    name: ClassVar[str] = "detection"
    primary: ClassVar[str] = "ap"
    metric_label: ClassVar[str] = "AP"
    line_label: ClassVar[str] = "AP "
    summary_metrics: ClassVar[tuple[str, ...]] = METRICS
    compilable: ClassVar[bool] = False  # data-dependent shapes (proposals, NMS): torch.compile gains nothing
    fits_training_set: ClassVar[bool] = False  # AP over the training images would cost as much as an epoch
    caches_teacher_outputs: ClassVar[bool] = False  # the teacher runs on each step's student proposals

    def setup(self, t) -> None:
        from kdforge.detection.data import load_detection_data
        from kdforge.detection.distill import DETECTION_METHODS, DetectionDistiller
        from kdforge.models.detection import build_detector

        cfg = t.cfg
        recipe = DETECTION_METHODS.get(cfg.method)
        t.data = load_detection_data(cfg.data)
        t.student = build_detector(cfg.student, t.data.num_classes, cfg.data.image_size,
                                   **detector_args(cfg)).to(t.device)
        t.teacher, t.teacher_arch, t.teacher_same_classes = None, None, False
        if recipe.roi or recipe.review:
            t.teacher, t.teacher_arch = self._teacher(cfg, t.data.classes)
            t.teacher.to(t.device)
            t.teacher_same_classes = True
        shard = {"rank": t.dist.rank, "world_size": t.dist.world_size}
        t.train_stream = t.data.stream("train", per_rank_batch(cfg.data.batch_size, t.dist), train=True,
                                       seed=cfg.seed, device=t.device, **shard)
        t.test_stream = t.data.stream("test", cfg.data.eval_batch_size, train=False, device=t.device)
        t.val_stream = t.data.stream("val", cfg.data.eval_batch_size, train=False, device=t.device) \
            if t.data.val is not None else None
        if len(t.train_stream) == 0:
            raise ConfigError(f"data.batch_size {cfg.data.batch_size} is larger than the training split "
                              f"({len(t.data.train)} images); lower it")
        t.distiller = DetectionDistiller(t.teacher, t.student, cfg.method, **cfg.method_args)

    @staticmethod
    def _teacher(cfg, classes: list[str]) -> tuple[nn.Module, str]:
        from kdforge.models.detection import load_detector

        if not cfg.teacher_checkpoint:
            raise ConfigError(f"detection method {cfg.method!r} needs a teacher: set teacher_checkpoint=RUN "
                              "(a task=detection run folder)")
        teacher, meta = load_detector(cfg.teacher_checkpoint, cfg.data.image_size)
        if list(meta.get("classes", [])) != list(classes):
            raise ConfigError(f"the teacher {cfg.teacher_checkpoint} was trained on other categories than "
                              f"{cfg.data.root} lists; detection distillation needs the same ones")
        return teacher, meta["arch"]

    def step(self, trainer, batch, state):
        return trainer.distiller(batch.images, batch.targets)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, stream, device: torch.device, amp: bool = False) -> dict:
        """COCO box AP, AP50, AP75, AP_S/M/L (%) of the model's detections over the whole split."""
        from kdforge.data.coco import coco_metrics
        from kdforge.detection.data import stack_detections

        was_training = model.training
        model.eval()
        detections = []
        for batch in stream.epoch(0):
            with autocast(device, amp):
                outputs = model(batch.images)
            detections += stack_detections(outputs, batch.index)
        model.train(was_training)
        metrics = coco_metrics(stream.dataset, detections)
        return {name: metrics[key] for name, key in zip(METRICS, ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L"))}

    def identity(self, cfg) -> dict:
        return {"task": "detection", "detector": detector_args(cfg), "image_size": cfg.data.image_size}


TASKS.add("detection", DetectionTask)
