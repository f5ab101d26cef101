"""Per-epoch evaluation, best-epoch selection and the run's summary (a Trainer mixin): metrics come from the task
object; the best epoch is chosen on the validation split when there is one (or on the method's own metric)."""

from __future__ import annotations

import torch

from kdforge.config import to_dict
from kdforge.engine.checkpoint import save_weights
from kdforge.engine.run import autocast, versions
from kdforge.methods.base import EvalContext
from kdforge.models import count_parameters


class EvaluationMixin:
    def _evaluate_epoch(self, epoch: int) -> dict:
        primary = self.task.primary
        test = self.task.evaluate(self.student, self.test_stream, self.device, self.amp)
        record = {"epoch": epoch + 1, **{f"test_{k}": v for k, v in test.items()}}
        selector = test[primary]
        if self.val_stream is not None:
            val = self.task.evaluate(self.student, self.val_stream, self.device, self.amp)
            record.update({f"val_{k}": val[k] for k in (primary, "loss") if k in val})
            selector = val[primary]
        record.update(self.method.evaluate_extra(EvalContext(
            self.student, self._clean_train(), self.val_stream, self.test_stream,
            lambda: autocast(self.device, self.amp))))
        if self.method.select_on:
            selector = record[self.method.select_on]
        p = self.progress
        # Progress's *_top1 fields hold the task's primary metric (detection: AP)
        p.max_test_top1 = max(p.max_test_top1, test[primary])
        if selector > p.best_top1:
            p.best_top1, p.best_test_top1, p.best_epoch = selector, test[primary], epoch + 1
            if self.method.keeps_best and self.dist.is_main:
                save_weights(self.folder / "best.pt", {**self._identity(), "model": self.student.state_dict(),
                                                       "epoch": epoch + 1, "selected_on": self.method.select_on})
        return record

    def _clean_train(self):
        if getattr(self, "_clean_train_stream", None) is None:
            self._clean_train_stream = self.data.stream("train", self.cfg.data.eval_batch_size, train=False,
                                                        workers=self.cfg.data.workers, device=self.device)
        return self._clean_train_stream

    def _epoch_line(self, train: dict, ev: dict) -> str:
        best = f"best {self.progress.best_test_top1:.2f}% (ep {self.progress.best_epoch})"
        return (f"epoch {int(train['epoch']):>3}/{self.cfg.epochs}  loss {train['loss/total']:.4f}  "
                f"train {train['train_top1']:.2f}%  test {self.task.line_label}{ev['test_' + self.task.primary]:.2f}%  "
                f"{best}  "
                f"{train['images_per_second']:.0f} img/s")

    def _summary(self, last_eval: dict, wall: float) -> dict:
        cfg, p, primary = self.cfg, self.progress, self.task.primary
        return {
            "task": self.task.name, "method": cfg.method, "teacher": self.teacher_arch, "student": cfg.student, "dataset": cfg.data.dataset,
            "seed": cfg.seed, "epochs": cfg.epochs,
            **{f"{k}_last": last_eval[f"test_{k}"] for k in self.task.summary_metrics},
            f"{primary}_best": p.best_test_top1, "best_epoch": p.best_epoch,
            f"val_{primary}_last": last_eval.get(f"val_{primary}"),
            "best_selected_on": self.method.select_on or ("val" if self.val_stream is not None else "test"),
            f"{primary}_best_test": p.max_test_top1,
            "train_top1": last_eval.get("train_top1"), "train_loss": last_eval.get("train_loss"),
            "teacher_folded_batchnorms": self.teacher_folded,
            "channels_last": self.channels_last, "teacher_channels_last": self.teacher_channels_last,
            "compiled": self.compiled, "compile_reason": self.compile_reason,
            "amp": self.amp, "amp_reason": self.amp_reason,
            "teacher_top1": self.teacher_top1,
            # the teacher's identity (a hash of its weights as the run used them): two teachers of one config, e.g.
            # trained at other thread counts, share a folder name and may share a top-1, never this
            "teacher_weights_key": self._teacher_weights_key() or None,
            "wall_seconds": wall, "train_seconds": p.train_seconds,
            "train_images_per_second": self.dist.world_size * p.train_images / p.train_seconds if p.train_seconds else 0.0,
            "world_size": self.dist.world_size,
            "teacher_cache": self.teacher_cache.stats() if self.teacher_cache is not None else None,
            "student_parameters": count_parameters(self.student),
            "device": str(self.device), "threads": torch.get_num_threads(),
            "config": to_dict(cfg), "versions": versions(),
            # every method argument the run trained with, defaults included: config.method_args holds only those
            # given, so a later change of a default cannot make a run's record say something else than what ran
            "method_settings": self.method.settings(),
        }
