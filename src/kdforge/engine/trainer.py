"""One trainer for plain training (teachers) and distillation (any registered method): set-up, the epoch loop,
checkpoints and resume, evaluation and best-epoch selection, the summary. The step itself is `kdforge.Distiller`'s;
what is task-specific is the task object's (`engine/task.py`); the run's folder lock and signals are
`engine/run.py`'s; a method's stages are `engine/pipeline.py`'s."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from kdforge.collective import all_reduce_
from kdforge.config import TrainConfig, to_dict
from kdforge.data import DatasetBundle, load_data
from kdforge.distiller import Distiller
from kdforge.engine.checkpoint import latest_checkpoint, load_into, load_weights, save_checkpoint, save_weights
from kdforge.engine.distributed import average_gradients, init_from_env, peer_failure, per_rank_batch, shutdown
from kdforge.engine.logger import RunLogger
from kdforge.engine.meter import EpochMeter
from kdforge.engine.models import build_model, check_compatible, load_teacher
from kdforge.engine.run import RunLock, autocast, compile_decision, resolve_device, stop_signals, versions
from kdforge.engine.schedule import learning_rate
from kdforge.engine.task import ClassificationTask
from kdforge.errors import ConfigError, NonFiniteLossError, PeerFailedError, TrainingStopped, UserError
from kdforge.fileio import atomic_write_json
from kdforge.methods import METHODS, StepState
from kdforge.methods.base import EvalContext, Method, Preparation
from kdforge.models import TappedModel, count_parameters


def lr_of(optimizer) -> float:
    """The schedule's learning rate (the rate of a group with scale 1)."""
    group = optimizer.param_groups[0]
    return group["lr"] / group["lr_scale"] if group["lr_scale"] else group["lr"]


@dataclass
class Progress:
    epoch: int = 0  # epochs fully done
    batch: int = 0  # batches done inside the current epoch
    step: int = 0  # optimiser steps done in total
    best_top1: float = -1.0
    best_test_top1: float = -1.0
    best_epoch: int = -1
    max_test_top1: float = -1.0  # the best test top-1 of any epoch (what a "best (test)" column shows)
    train_seconds: float = 0.0
    train_images: int = 0
    wall_seconds: float = 0.0  # wall time of earlier sittings, up to their last checkpoint


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, echo=None, keep_process_group: bool = False,
                 task=None):
        self.cfg = cfg
        self.task = task if task is not None else ClassificationTask()
        self.resume = resume
        self.echo = echo
        self.keep_process_group = keep_process_group  # a staged method's next stage reuses it
        self.dist, device = init_from_env(cfg.device)
        self.device = device if device is not None else resolve_device(cfg.device)
        self.folder = cfg.run_dir

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
        self.method_cls = METHODS.get(cfg.method)
        self.data: DatasetBundle = load_data(cfg.data, self.device)
        nc, channels = self.data.num_classes, self.data.in_channels
        size = self._input_shape()[-1]
        self.student = build_model(cfg.student, nc, channels, size).to(self.device)
        self.teacher, self.teacher_arch, self.teacher_same_classes = None, None, False
        if self.method_cls.uses_teacher(cfg.method_args):
            self.teacher, self.teacher_arch, self.teacher_same_classes = load_teacher(
                cfg, self.data.classes, channels, self.method_cls.teacher_classes_may_differ, size)
            self.teacher.to(self.device).eval().requires_grad_(False)
        probe = self.data.train.images[:2] if hasattr(self.data.train, "images") else None
        if probe is not None:
            probe = probe.float()
            check_compatible(self.student, cfg.student, probe)
            if self.teacher is not None:
                check_compatible(self.teacher, self.teacher_arch, probe)
        if cfg.channels_last:
            for m in (self.student, self.teacher):
                if m is not None:
                    m.to(memory_format=torch.channels_last)
        shard = {"rank": self.dist.rank, "world_size": self.dist.world_size}
        self.train_stream = self.data.stream("train", per_rank_batch(cfg.data.batch_size, self.dist), train=True,
                                             seed=cfg.seed, workers=cfg.data.workers, device=self.device, **shard)
        self.test_stream = self.data.stream("test", cfg.data.eval_batch_size, train=False, workers=cfg.data.workers,
                                            device=self.device, **shard)
        self.val_stream = self.data.stream("val", cfg.data.eval_batch_size, train=False, device=self.device, **shard) \
            if self.data.val is not None else None
        if len(self.train_stream) == 0:
            raise ConfigError(f"data.batch_size {cfg.data.batch_size} is larger than the training set "
                              f"({len(self.data.train)} images); lower it")
        # the one step path users get too (kdforge.Distiller); the frozen teacher runs as a BatchNorm-folded copy
        self.distiller = Distiller(
            self.teacher, self.student, cfg.method, input_shape=self._input_shape(), num_classes=nc,
            epochs=cfg.epochs, steps_per_epoch=len(self.train_stream), dataset_size=len(self.data.train),
            train_labels=getattr(self.data.train, "labels", None), label_smoothing=cfg.label_smoothing,
            fold_teacher_bn=cfg.teacher_fold_bn, world_size=self.dist.world_size,
            build_student=lambda: build_model(cfg.student, nc, channels, size).to(self.device), **cfg.method_args)
        self.method, self.teacher_forward = self.distiller.method, self.distiller.teacher_forward
        self.teacher_folded = self.distiller.teacher_folded
        self.compiled, self.compile_reason = compile_decision(cfg.compile, cfg.epochs * len(self.train_stream),
                                                              self.device)
        if self.compiled:
            # in place (nn.Module.compile): parameter names and checkpoints stay those of the plain model
            for model in (self.student, self.teacher_forward):
                if model is not None:
                    model.compile()
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

    def _teacher_cache(self):
        """The teacher-output cache when asked for and the method reads only the teacher's logits/embedding."""
        cfg = self.cfg
        if not cfg.teacher_cache or self.teacher is None:
            return None
        if not set(self.method.teacher_taps) <= {"embedding"}:
            self.logger.info(f"teacher cache off: {cfg.method} reads the teacher's feature maps")
            return None
        if not hasattr(self.data.train, "images"):
            self.logger.info("teacher cache off: it needs an in-memory dataset (augmentation by index)")
            return None
        from kdforge.data.sources import cache_dir
        from kdforge.engine.teacher_cache import TeacherCache
        from kdforge.memory.incontext import fingerprint

        taps = sorted(self.method.teacher_taps)
        key = fingerprint("teacher-outputs-v1", self._keys()[0], self._keys()[1], repr(self.data.augment),
                          cfg.seed, cfg.data.batch_size, taps, cfg.teacher_cache_dtype, cfg.amp)
        expected = len(self.train_stream) * cfg.data.batch_size
        return TeacherCache(cache_dir(), key, len(self.data.train), expected, cfg.teacher_cache_dtype, self.device,
                            self.dist.is_main, self.logger.info)

    def _keys(self) -> tuple[str, str]:
        """(teacher weights hash, training data hash), computed once."""
        if getattr(self, "_key_cache", None) is None:
            from kdforge.memory.incontext import fingerprint

            train = self.data.train
            data_key = fingerprint(train.images, train.labels) if hasattr(train, "images") else \
                fingerprint(repr(getattr(train, "samples", None)), self.cfg.data.dataset)
            teacher_key = fingerprint(self.teacher.state_dict()) if self.teacher is not None else ""
            self._key_cache = (teacher_key, data_key)
        return self._key_cache

    def _preparation(self) -> Preparation:
        from kdforge.data.sources import cache_dir

        teacher_key, data_key = self._keys()
        teacher = TappedModel(self.teacher_forward, ("embedding",)) if self.teacher is not None else None
        return Preparation(teacher, self._clean_train(), lambda: autocast(self.device, self.cfg.amp), cache_dir(), teacher_key,
                           data_key, self.dist.is_main, self.logger.info)

    def _input_shape(self) -> tuple[int, ...]:
        if hasattr(self.data.train, "images"):
            return tuple(self.data.train.images.shape[1:])
        return (3, self.cfg.data.image_size, self.cfg.data.image_size)

    # ---------------------------------------------------------------- checkpoints
    def _identity(self) -> dict:
        return {"format": "kdforge", "arch": self.cfg.student, "num_classes": self.data.num_classes,
                "classes": list(self.data.classes), "dataset": self.cfg.data.dataset}

    def _payload(self) -> dict:
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            **self._identity(), "model": self.student.state_dict(), "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(), "progress": self._progress_to_save(),
            "meter": self.meter.state_dict(), "rng": rng, "teacher_top1": self.teacher_top1,
            "config": json.dumps(to_dict(self.cfg), sort_keys=True),
        }

    def _progress_to_save(self) -> dict:
        # a resumed run reports the wall time of all its sittings, not only of the last one
        progress = dict(vars(self.progress))
        progress["wall_seconds"] += time.perf_counter() - self._sitting_start
        return progress

    def _save(self) -> None:
        if self.dist.is_main:  # every rank holds the same state; one writes it
            save_checkpoint(self.folder, self._payload())

    def _restore(self, ckpt: dict) -> None:
        saved = json.loads(ckpt["config"])
        now = to_dict(self.cfg)
        for key in ("method", "student", "seed", "epochs"):
            if saved.get(key) != now.get(key):
                raise UserError(f"cannot resume {self.folder}: it was run with {key}={saved.get(key)!r}, "
                                f"now {key}={now.get(key)!r}; use another out= folder")
        load_into(self.student, ckpt["model"], f"{self.folder}/checkpoint.pt")
        self.method.load_state_dict(ckpt["method"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        for group, scale in zip(self.optimizer.param_groups, self._lr_scales):
            group["lr_scale"] = scale  # checkpoints from before learning-rate scales lack the key
        self.progress = Progress(**ckpt["progress"])
        self.meter.load_state_dict(ckpt["meter"])
        self.teacher_top1 = ckpt.get("teacher_top1")
        torch.set_rng_state(ckpt["rng"]["cpu"])
        if "cuda" in ckpt["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)

    # ---------------------------------------------------------------- training
    def _step(self, batch, epoch: int, step_t: torch.Tensor) -> None:
        cfg, p = self.cfg, self.progress
        x = batch.input.contiguous(memory_format=torch.channels_last) if cfg.channels_last else batch.input
        lr = learning_rate(cfg.optim, p.step, len(self.train_stream), cfg.epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        state = StepState(epoch, p.step, epoch + p.batch / len(self.train_stream))
        with autocast(self.device, cfg.amp):
            teacher_out = None
            if self.replaying:
                teacher_out = self.teacher_cache.lookup(batch.index)
            elif self.teacher is not None:
                teacher_out = self.distiller.teacher_outputs(x)
                if self.teacher_cache is not None:
                    teacher_out = self.teacher_cache.record(batch.index, teacher_out)
            out = self.distiller(x, batch.target, batch.index, state=state, teacher_output=teacher_out)
        terms, total, student_out = out.terms, out.loss, out.student
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.dist.enabled:
            average_gradients(self.method_params)  # DDP already averaged the student's
        self.optimizer.step()
        self.method.after_step()
        self.meter.add(terms, total, student_out.logits, batch.target, step_t)
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
            n = batch.target.shape[0]
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

    def _stop_agreed(self, step: int) -> bool:
        """A single process stops after the step in which a stop signal arrived; under torchrun the ranks
        agree at the next metrics read (every log_every steps), so that all of them stop at the same step."""
        if not self.dist.enabled:
            return self.stop_signal is not None
        if step % self.cfg.log_every:
            return False
        flag = torch.tensor([0 if self.stop_signal is None else int(self.stop_signal)], device=self.device)
        all_reduce_(flag, torch.distributed.ReduceOp.MAX)
        self.stop_signal = int(flag.item()) or None
        return self.stop_signal is not None

    def _stop(self, epoch: int, start: float, images: int) -> None:
        self._check_finite(epoch)
        self._account(start, images)
        self._save()
        name = signal.Signals(self.stop_signal).name
        p = self.progress
        raise TrainingStopped(f"stopped by {name} at epoch {epoch + 1}, batch {p.batch} (step {p.step}); checkpoint "
                              f"written to {self.folder}; continue with --resume", 128 + int(self.stop_signal))

    def _account(self, start: float, images: int) -> None:
        self.progress.train_seconds += time.perf_counter() - start
        self.progress.train_images += images

    def _evaluate_epoch(self, epoch: int) -> dict:
        test = self.task.evaluate(self.student, self.test_stream, self.device, self.cfg.amp)
        record = {"epoch": epoch + 1, "test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"]}
        selector = test["top1"]
        if self.val_stream is not None:
            val = self.task.evaluate(self.student, self.val_stream, self.device, self.cfg.amp)
            record.update({"val_top1": val["top1"], "val_loss": val["loss"]})
            selector = val["top1"]
        record.update(self.method.evaluate_extra(EvalContext(
            self.student, self._clean_train(), self.val_stream, self.test_stream,
            lambda: autocast(self.device, self.cfg.amp))))
        if self.method.select_on:
            selector = record[self.method.select_on]
        p = self.progress
        p.max_test_top1 = max(p.max_test_top1, test["top1"])
        if selector > p.best_top1:
            p.best_top1, p.best_test_top1, p.best_epoch = selector, test["top1"], epoch + 1
            if self.method.keeps_best and self.dist.is_main:
                save_weights(self.folder / "best.pt", {**self._identity(), "model": self.student.state_dict(),
                                                       "epoch": epoch + 1, "selected_on": self.method.select_on})
        return record

    def _clean_train(self):
        if getattr(self, "_clean_train_stream", None) is None:
            self._clean_train_stream = self.data.stream("train", self.cfg.data.eval_batch_size, train=False,
                                                        workers=self.cfg.data.workers, device=self.device)
        return self._clean_train_stream

    def fit(self) -> dict:
        self._setup_runtime()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create run folder {self.folder}: {exc.strerror}; choose a writable out=") from None
        lock = RunLock(self.folder) if self.dist.is_main else contextlib.nullcontext()
        peer_failed = False
        try:
            with lock, stop_signals(self):
                if self.dist.is_main:
                    for stale in self.folder.glob(".*.tmp"):  # temporaries of a write that a kill interrupted
                        stale.unlink(missing_ok=True)
                result = self._fit_locked()
            if self.dist.enabled:
                torch.distributed.barrier()  # rank 0's files are written before any process moves on
            return result
        except RuntimeError as exc:
            if not (self.dist.enabled and peer_failure(exc)):
                raise
            peer_failed = True
            raise PeerFailedError(
                f"another process of this {self.dist.world_size}-process run died ({_first_line(exc)}); "
                f"rank {self.dist.rank} stopped too. The last checkpoint in {self.folder} is intact: relaunch the same "
                "torchrun command with --resume") from None
        finally:
            if self.dist.enabled and not self.keep_process_group and not peer_failed:
                shutdown()  # (a group with a dead member cannot be torn down cleanly: the process exit does it)

    def _fit_locked(self) -> dict:
        cfg = self.cfg
        existing = (self.folder / "checkpoint.pt").exists() or (self.folder / "checkpoint.prev.pt").exists()
        if existing and not self.resume:
            raise UserError(f"run folder {self.folder} already holds a run; pass --resume to continue it "
                            "or choose another out=")
        self._sitting_start = time.perf_counter()
        self._setup()
        self.meter = EpochMeter(self.device)
        self.logger = RunLogger(self.folder, cfg.tensorboard, enabled=self.dist.is_main, echo=self.echo)
        for note in self.data.notes:
            self.logger.info(note)
        # the decision goes to metrics.jsonl; the console hears of it only when compiling (a long first step)
        self.logger.record("compile", 0, {"compiled": self.compiled, "reason": self.compile_reason})
        if self.compiled:
            self.logger.info(f"compiling the forward passes ({self.compile_reason}); the first steps take longer")
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
            atomic_write_json(self.folder / "config.json", {"config": to_dict(cfg), "versions": versions(),
                                                            "world_size": self.dist.world_size})
        if self.teacher_same_classes and self.teacher_top1 is None:
            self.teacher_top1 = self.task.evaluate(self.teacher_forward, self.test_stream, self.device, cfg.amp)["top1"]
            self.logger.info(f"teacher {self.teacher_arch}: top-1 {self.teacher_top1:.2f}% on the "
                             f"{cfg.data.dataset} test split")
        try:
            last_eval = self._run_epochs()
            # how well the student fits its training images, un-augmented: tells underfitting from overfitting
            fit = self.task.evaluate(self.student, self._clean_train(), self.device, cfg.amp)
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
                self._train_epoch(epoch, bar)
            record = self.meter.read()
            record.update(epoch=epoch + 1, lr=lr_of(self.optimizer),
                          images_per_second=p.train_images / p.train_seconds if p.train_seconds else 0.0)
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

    def _epoch_line(self, train: dict, ev: dict) -> str:
        best = f"best {self.progress.best_test_top1:.2f}% (ep {self.progress.best_epoch})"
        return (f"epoch {int(train['epoch']):>3}/{self.cfg.epochs}  loss {train['loss/total']:.4f}  "
                f"train {train['train_top1']:.2f}%  test {ev['test_top1']:.2f}%  {best}  "
                f"{train['images_per_second']:.0f} img/s")

    def _summary(self, last_eval: dict, wall: float) -> dict:
        cfg, p = self.cfg, self.progress
        return {
            "method": cfg.method, "teacher": self.teacher_arch, "student": cfg.student, "dataset": cfg.data.dataset,
            "seed": cfg.seed, "epochs": cfg.epochs,
            "top1_last": last_eval["test_top1"], "top5_last": last_eval["test_top5"],
            "top1_best": p.best_test_top1, "best_epoch": p.best_epoch, "val_top1_last": last_eval.get("val_top1"),
            "best_selected_on": self.method.select_on or ("val" if self.val_stream is not None else "test"),
            "top1_best_test": p.max_test_top1,
            "train_top1": last_eval.get("train_top1"), "train_loss": last_eval.get("train_loss"),
            "teacher_folded_batchnorms": self.teacher_folded,
            "compiled": self.compiled, "compile_reason": self.compile_reason,
            "teacher_top1": self.teacher_top1,
            "wall_seconds": wall, "train_seconds": p.train_seconds,
            "train_images_per_second": self.dist.world_size * p.train_images / p.train_seconds if p.train_seconds else 0.0,
            "world_size": self.dist.world_size,
            "teacher_cache": self.teacher_cache.stats() if self.teacher_cache is not None else None,
            "student_parameters": count_parameters(self.student),
            "device": str(self.device), "threads": torch.get_num_threads(),
            "config": to_dict(cfg), "versions": versions(),
        }


def _first_line(exc: BaseException) -> str:
    """The gist of a backend error: its first line without the source-location prefix, at most 100 characters."""
    line = re.sub(r"^\[[^\]]*\]\s*", "", (str(exc).strip().splitlines() or [""])[0])
    return line[:100]
