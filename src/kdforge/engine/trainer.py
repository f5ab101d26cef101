"""One trainer for plain training (teachers) and distillation (any registered method): set-up, the epoch loop,
checkpoints and resume, evaluation and best-epoch selection, the summary. The step itself is `kdforge.Distiller`'s;
what is task-specific is the task object's (`engine/task.py`); the run's folder lock and signals are
`engine/run.py`'s; a method's stages are `engine/pipeline.py`'s."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

from kdforge.config import RUN_CONFIG, TrainConfig, settings_differences, to_dict
from kdforge.engine.checkpoint import latest_checkpoint, load_into, load_weights
from kdforge.engine.compilation import CompileMixin
from kdforge.engine.distributed import average_gradients, init_from_env
from kdforge.engine.evaluation import EvaluationMixin
from kdforge.engine.logger import RunLogger
from kdforge.engine.meter import EpochMeter
from kdforge.engine.preparation import PreparationMixin
from kdforge.engine.run import RunMixin, amp_decision, autocast, first_sitting_amp, resolve_device, versions
from kdforge.engine.schedule import learning_rate
from kdforge.engine.state import CheckpointMixin, Progress
from kdforge.engine.task import task_for
from kdforge.errors import ConfigError, NonFiniteLossError, UserError
from kdforge.fileio import atomic_write_json
from kdforge.methods import StepState
from kdforge.methods.base import Method


def lr_of(optimizer) -> float:
    """The schedule's learning rate (the rate of a group with scale 1)."""
    group = optimizer.param_groups[0]
    return group["lr"] / group["lr_scale"] if group["lr_scale"] else group["lr"]


class Trainer(RunMixin, CompileMixin, PreparationMixin, CheckpointMixin, EvaluationMixin):
    def __init__(self, cfg: TrainConfig, resume: bool = False, echo=None, keep_process_group: bool = False,
                 task=None):
        self.cfg = cfg
        self.task = task if task is not None else task_for(cfg.task)
        self.resume = resume
        self.echo = echo
        self.keep_process_group = keep_process_group  # a staged method's next stage reuses it
        self.dist, device = init_from_env(cfg.device)
        self.device = device if device is not None else resolve_device(cfg.device)
        self.folder = cfg.run_dir
        self.channels_last = False  # the student's memory layout; a task's set-up may turn it on
        self.compiled, self.compile_reason = False, None  # decided at set-up (decide_compile)
        self.amp, self.amp_reason = amp_decision(cfg.amp, self.device)  # bf16 autocast, resolved for this device
        kept = first_sitting_amp(self.folder) if resume and cfg.amp == "auto" else None
        if kept is not None:
            self.amp, self.amp_reason = kept[0], f"{kept[1]} (the run's first sitting; kept on resume)"

    # ---------------------------------------------------------------- set-up
    def _setup_runtime(self) -> None:
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        if self.cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        torch.manual_seed(self.cfg.seed)
        np.random.seed(self.cfg.seed % 2**32)

    def _setup(self) -> None:
        cfg = self.cfg
        self.task.setup(self)  # data, student, teacher, streams and the distiller (the one step path)
        self.method, self.teacher_forward = self.distiller.method, self.distiller.teacher_forward
        self.teacher_folded = self.distiller.teacher_folded
        self.teacher_channels_last = self.distiller.teacher_channels_last
        self.decide_compile(cfg.epochs * len(self.train_stream))
        self._compile_models()
        if self.dist.enabled:
            if cfg.sync_batchnorm:
                if self.device.type != "cuda":
                    raise ConfigError("sync_batchnorm=true needs GPUs (PyTorch's SyncBatchNorm has no CPU kernel); "
                                      "leave it off on CPU")
                self.student = self.distiller.student = nn.SyncBatchNorm.convert_sync_batchnorm(self.student)
            self.distiller.wrap_student(nn.parallel.DistributedDataParallel(
                self.student, device_ids=[self.device.index] if self.device.type == "cuda" else None))
        o = cfg.optim
        groups = self.distiller.param_groups()
        self._lr_scales = [g["lr_scale"] for g in groups]
        self.optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum,
                                         nesterov=o.nesterov and o.momentum > 0, weight_decay=o.weight_decay)
        self.method_params = [p for p in self.method.parameters() if p.requires_grad]
        self.progress = Progress()
        self.teacher_top1 = None

    # ---------------------------------------------------------------- training
    def _step(self, batch, epoch: int, step_t: torch.Tensor) -> None:
        cfg, p = self.cfg, self.progress
        lr = learning_rate(cfg.optim, p.step, len(self.train_stream), cfg.epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        state = StepState(epoch, p.step, epoch + p.batch / len(self.train_stream))
        with autocast(self.device, self.amp):
            out, labels = self.task.step(self, batch, state)
        terms, total, student_out = out.terms, out.loss, out.student
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.dist.enabled:
            average_gradients(self.method_params)  # DDP already averaged the student's
        self.optimizer.step()
        self.distiller.after_step()  # now, not at the next step: a checkpoint between them must hold the update
        self.meter.add(terms, total, student_out.logits, labels, step_t)
        step_t += 1

    def _check_finite(self, epoch: int) -> None:
        bad = self.meter.first_nonfinite()
        if bad is not None:
            kept = self.folder / "checkpoint.pt"
            where = f"the last good checkpoint {kept} is kept" if kept.exists() else "no checkpoint was written yet"
            raise NonFiniteLossError(
                f"loss term {bad[0]!r} became non-finite at step {bad[1]} (epoch {epoch + 1}); "
                f"training stopped and {where}; lower the learning rate or the term's weight"
            )

    def _train_epoch(self, epoch: int, bar) -> None:
        cfg, p = self.cfg, self.progress
        self.student.train()
        self.method.train()
        step_t = torch.tensor(p.step, dtype=torch.long, device=self.device)
        self.replaying = self.teacher_cache is not None and self.teacher_cache.begin_epoch(epoch, p.batch)
        start, images = time.perf_counter(), 0
        for batch in self.train_stream.epoch(epoch, start_batch=p.batch):
            self._step(batch, epoch, step_t)
            p.batch += 1
            p.step += 1
            n = batch.index.shape[0]
            images += n
            bar.update(n)
            if p.step % cfg.log_every == 0:
                self._check_finite(epoch)
                record = self.meter.read()
                record.update(epoch=epoch + 1, lr=lr_of(self.optimizer),
                              images_per_second=images / max(time.perf_counter() - start, 1e-9))
                bar.set_postfix(loss=f"{record['loss/total']:.3f}", top1=f"{record['train_top1']:.1f}")
                self.logger.record("train", p.step, record)
            if cfg.checkpoint_every and p.step % cfg.checkpoint_every == 0 and p.batch < len(self.train_stream):
                self._check_finite(epoch)
                self._account(start, images)
                start, images = time.perf_counter(), 0
                self._save()
            if self._stop_agreed(p.step):
                self._stop(epoch, start, images)
        self._check_finite(epoch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._account(start, images)
        if self.teacher_cache is not None and not self.replaying:
            self.teacher_cache.end_epoch(epoch)

    def _check_same_training(self) -> None:
        """A run resumes only with the settings it was trained with (the config's first section); how it is
        executed (device, threads, logging, the run folder...) may change between sittings."""
        recorded = self.folder / RUN_CONFIG
        if not recorded.exists():
            return
        differences = settings_differences(json.loads(recorded.read_text())["config"], self.cfg)
        if differences:
            more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
            raise UserError(f"run folder {self.folder} was trained with other settings: {'; '.join(differences[:3])}"
                            f"{more}; resume with its own settings or choose another out=")

    def _fit_locked(self) -> dict:
        cfg = self.cfg
        existing = (self.folder / "checkpoint.pt").exists() or (self.folder / "checkpoint.prev.pt").exists()
        if existing and not self.resume:
            raise UserError(f"run folder {self.folder} already holds a run; pass --resume to continue it "
                            "or choose another out=")
        if existing:
            self._check_same_training()
        self._sitting_start = time.perf_counter()
        self._setup()
        self.meter = EpochMeter(self.device)
        self.logger = RunLogger(self.folder, cfg.tensorboard, enabled=self.dist.is_main, echo=self.echo)
        for note in self.data.notes:
            self.logger.info(note)
        self._log_compile_decision()
        # to metrics.jsonl and summary.json only: the console keeps one line for an error that follows
        self.logger.record("amp", 0, {"amp": self.amp, "reason": self.amp_reason})
        if type(self.method).prepare is not Method.prepare:  # hashing teacher and data costs a little: only on use
            self.distiller.prepare_with(self._preparation())
        self.teacher_cache = self._teacher_cache()
        ckpt = latest_checkpoint(self.folder, log=self.logger.info) if self.resume else None
        if ckpt is not None:
            self._restore(ckpt)
            self.logger.info(f"resuming {self.folder} at epoch {self.progress.epoch + 1}, batch {self.progress.batch}")
        elif cfg.init_checkpoint:
            state, _ = load_weights(cfg.init_checkpoint)
            load_into(self.student, state, str(cfg.init_checkpoint))
            self.logger.info(f"student initialised from {cfg.init_checkpoint}")
        if self.dist.is_main:
            atomic_write_json(self.folder / RUN_CONFIG, {"config": to_dict(cfg), "versions": versions(),
                                                            "world_size": self.dist.world_size})
        if self.teacher_same_classes and self.teacher_top1 is None:
            self.teacher_top1 = self.task.evaluate(self.teacher_forward, self.test_stream, self.device,
                                                   self.amp)[self.task.primary]
            self.logger.info(f"teacher {self.teacher_arch}: {self.task.metric_label} {self.teacher_top1:.2f}% on the "
                             f"{cfg.data.dataset} test split")
        try:
            last_eval = self._run_epochs()
            if self.task.fits_training_set:
                # how well the student fits its training images, un-augmented: tells underfitting from overfitting
                fit = self.task.evaluate(self.student, self._clean_train(), self.device, self.amp)
                last_eval = {**last_eval, "train_top1": fit["top1"], "train_loss": fit["loss"]}
        finally:
            self.logger.close()
        summary = self._summary(last_eval, self.progress.wall_seconds + time.perf_counter() - self._sitting_start)
        if self.dist.is_main:
            atomic_write_json(self.folder / "summary.json", summary)
        return summary

    def _run_epochs(self) -> dict:
        from tqdm import tqdm

        cfg, p = self.cfg, self.progress
        last_eval = None
        while p.epoch < cfg.epochs:
            epoch = p.epoch
            total = len(self.train_stream) * cfg.data.batch_size
            with tqdm(total=total, initial=p.batch * cfg.data.batch_size, unit="img", unit_scale=True, leave=False,
                      desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and sys.stderr.isatty())) as bar:
                images, seconds = p.train_images, p.train_seconds
                self._train_epoch(epoch, bar)
            images, seconds = p.train_images - images, p.train_seconds - seconds
            record = self.meter.read()
            # images_per_second is the run's average so far (a compile's time included);
            # epoch_images_per_second this sitting's part of the epoch alone
            record.update(epoch=epoch + 1, lr=lr_of(self.optimizer),
                          images_per_second=p.train_images / p.train_seconds if p.train_seconds else 0.0,
                          epoch_images_per_second=images / seconds if seconds else 0.0)
            self.logger.record("epoch", p.step, record)
            p.epoch, p.batch = epoch + 1, 0
            self.meter.reset()
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                last_eval = self._evaluate_epoch(epoch)
                self.logger.record("eval", p.step, last_eval)
                self.logger.info(self._epoch_line(record, last_eval))
            self._save()
        if last_eval is None:  # resumed after the last epoch had finished
            last_eval = self._evaluate_epoch(cfg.epochs - 1)
        return last_eval
