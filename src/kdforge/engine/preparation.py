"""What a run derives from its teacher and data before training: the teacher-output cache, the hashes that key
caches, the Preparation a method reads once (a Trainer mixin)."""

from __future__ import annotations

from kdforge.engine.run import autocast
from kdforge.methods.base import Preparation
from kdforge.models import TappedModel


class PreparationMixin:
    def _teacher_cache(self):
        """The teacher-output cache when asked for and the method reads only the teacher's logits/embedding."""
        cfg = self.cfg
        if not cfg.teacher_cache or self.teacher is None:
            return None
        if not self.task.caches_teacher_outputs:
            self.logger.info(f"teacher cache off: the {self.task.name} teacher runs on each step's student outputs")
            return None
        if not set(self.method.teacher_taps) <= {"embedding"}:
            self.logger.info(f"teacher cache off: {cfg.method} reads the teacher's feature maps")
            return None
        if not hasattr(self.data.train, "images"):
            self.logger.info("teacher cache off: it needs an in-memory dataset (augmentation by index)")
            return None
        from kdforge.data.sources import cache_dir
        from kdforge.engine.teacher_cache import TeacherCache, cached_taps
        from kdforge.memory.incontext import fingerprint

        taps = cached_taps(self.teacher_forward, self.method.teacher_taps)
        if set(taps) != set(self.method.teacher_taps):  # the teacher's forward records them all; the method reads its own
            self.distiller.teacher_view = TappedModel(self.teacher_forward, taps)
        key = fingerprint("teacher-outputs-v1", self._keys()[0], self._keys()[1], repr(self.data.augment),
                          cfg.seed, cfg.data.batch_size, list(taps), cfg.teacher_cache_dtype, self.amp)
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
            self._key_cache = (self._teacher_weights_key(), data_key)
        return self._key_cache

    def _teacher_weights_key(self) -> str:
        """A hash of the teacher's weights as the run uses them ("" without a teacher), computed once."""
        if getattr(self, "_teacher_key_cache", None) is None:
            from kdforge.memory.incontext import fingerprint

            self._teacher_key_cache = fingerprint(self.teacher.state_dict()) if self.teacher is not None else ""
        return self._teacher_key_cache

    def _preparation(self) -> Preparation:
        from kdforge.data.sources import cache_dir

        teacher_key, data_key = self._keys()
        teacher = TappedModel(self.teacher_forward, ("embedding",)) if self.teacher is not None else None
        return Preparation(teacher, self._clean_train(), lambda: autocast(self.device, self.amp), cache_dir(), teacher_key,
                           data_key, self.dist.is_main, self.logger.info)

    def _input_shape(self) -> tuple[int, ...]:
        if hasattr(self.data.train, "images"):
            return tuple(self.data.train.images.shape[1:])
        return (3, self.cfg.data.image_size, self.cfg.data.image_size)
