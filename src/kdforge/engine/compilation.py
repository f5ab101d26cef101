"""Whether a run compiles its networks (`compile: true | false | auto`), and the trainer's side of it: `auto` times
a sitting's first eager steps and compiles the student, the frozen teacher and the networks a method trains beside
them (peers) when the steps left would recover the compile time with margin."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn

# `compile: auto` times a sitting's first eager steps and compiles when the steps left would save more than the
# compile costs, with margin. Measured (bench/compile_speed.py, kd step, batch 64): resnet56 -> resnet20 at 2 CPU
# threads 1.94x faster compiled after a 76 s compile; resnet20 -> resnet8 at 1 thread 1.73x after 24 s. The
# compile time follows the depth: about half a second per layer (a leaf module with parameters; 158 and 62 layers
# there). Evaluation compiles the student once more in eval mode. So the saving is predicted at the lower gain
# and must cover twice the compile time estimated from the layers.
AUTO_COMPILE_GAIN = 1.7
AUTO_COMPILE_SECONDS_PER_LAYER = 0.5
AUTO_COMPILE_MARGIN = 2.0
AUTO_COMPILE_MIN_STEPS = 300  # fewer steps than this are never compiled by auto: the tests and the demo stay eager
PROBE_SKIP, PROBE_STEPS = 2, 8  # untimed first steps (allocation, caches), then the steps timed
AUTO_COMPILE_DISTRIBUTED_STEPS = 2000  # under torchrun (no timing: ranks decide before DDP wraps the student)


def compile_decision(setting, steps: int, device: torch.device) -> tuple[bool | None, str]:
    """(whether to torch.compile the student and teacher forward, why) for the `compile` setting of a run of
    `steps` optimiser steps on `device`; None: `auto` decides after timing the first steps (`compile_pays`)."""
    if setting is True:
        return True, "compile=true"
    if setting is False:
        return False, "compile=false"
    if steps < AUTO_COMPILE_MIN_STEPS:
        return False, f"compile=auto: {steps} steps are too few to recover the compile time (< {AUTO_COMPILE_MIN_STEPS})"
    missing = _missing_toolchain(device)
    if missing:
        return False, f"compile=auto: {missing}"
    return None, "compile=auto: timing the first steps eagerly"


def layer_count(model: nn.Module) -> int:
    """Leaf modules with parameters of their own (convolutions, linear layers, norms): what compile time follows."""
    return sum(1 for m in model.modules() if next(m.children(), None) is None
               and next(m.parameters(recurse=False), None) is not None)


def compile_seconds(models: list[nn.Module], evaluated: nn.Module) -> float:
    """The compile time `auto` expects: every compiled model's layers once, the evaluated student's once more."""
    return AUTO_COMPILE_SECONDS_PER_LAYER * (sum(layer_count(m) for m in models) + layer_count(evaluated))


def compile_pays(step_seconds: float, steps_left: int, cost_seconds: float) -> tuple[bool, str]:
    """`compile: auto`'s decision from the timed eager step: whether the steps left, each faster by the measured
    gain, save at least the margin times the expected compile time."""
    saving = steps_left * step_seconds * (1 - 1 / AUTO_COMPILE_GAIN)
    needed = AUTO_COMPILE_MARGIN * cost_seconds
    verdict = "recover" if saving >= needed else "do not recover"
    return saving >= needed, (f"compile=auto: {steps_left} steps of {step_seconds * 1000:.0f} ms eager would save "
                              f"about {saving:.0f} s compiled; they {verdict} a compile of about "
                              f"{cost_seconds:.0f} s ({needed:.0f} s with margin)")


class StepTimer:
    """Times a sitting's first eager steps for `compile: auto`: `tick()` after each step; it returns the median
    step's seconds once PROBE_STEPS steps after the PROBE_SKIP first ones are timed (None before). On CUDA it
    synchronises during those few steps only."""

    def __init__(self, device: torch.device, clock=time.perf_counter):
        self.device, self.clock, self.marks = device, clock, []

    def tick(self) -> float | None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.marks.append(self.clock())
        if len(self.marks) < PROBE_SKIP + PROBE_STEPS + 1:
            return None
        timed = self.marks[PROBE_SKIP:]
        return statistics.median(b - a for a, b in zip(timed, timed[1:]))


def _missing_toolchain(device: torch.device) -> str | None:
    """What torch.compile's default backend lacks here (None when nothing): a C++ compiler on CPU, Triton on CUDA."""
    import importlib.util
    import shutil

    if device.type == "cuda":
        return None if importlib.util.find_spec("triton") else "Triton is not installed"
    if device.type == "cpu":
        return None if any(shutil.which(c) for c in ("g++", "c++", "clang++")) else "no C++ compiler on PATH"
    return f"no compile backend chosen for {device.type}"


class CompileMixin:
    """A Trainer's compile decision: made at set-up for true / false / runs too short or without a toolchain (and
    under torchrun), else after the first steps are timed; logged to metrics.jsonl at the step it is made."""

    def _decide_compile(self, steps: int) -> None:
        self.compiled, self.compile_reason = compile_decision(self.cfg.compile, steps, self.device) \
            if self.task.compilable else (False, f"{self.task.name} models run eager")
        if self.compiled is None and self.dist.enabled:
            # ranks must agree before DDP wraps the student, so no timing: the step count alone decides
            self.compiled = steps >= AUTO_COMPILE_DISTRIBUTED_STEPS
            self.compile_reason = (f"compile=auto under torchrun: {steps} steps "
                                   f"({'>=' if self.compiled else '<'} {AUTO_COMPILE_DISTRIBUTED_STEPS})")
        self.step_timer = StepTimer(self.device) if self.compiled is None else None
        if self.compiled:
            self._compile_models()

    def _models_to_compile(self) -> list[nn.Module]:
        return [m for m in (self.student, self.teacher_forward, *self.method.trained_models()) if m is not None]

    def _compile_models(self) -> None:
        # in place (nn.Module.compile): parameter names and checkpoints stay those of the plain model
        for model in self._models_to_compile():
            model.compile()

    def _time_step(self) -> None:
        """compile=auto: once the first eager steps are timed, decide, say so, and compile if it pays."""
        seconds = self.step_timer.tick()
        if seconds is None:
            return
        self.step_timer = None
        steps_left = self.cfg.epochs * len(self.train_stream) - self.progress.step
        cost = compile_seconds(self._models_to_compile(), self.student)
        self.compiled, self.compile_reason = compile_pays(seconds, steps_left, cost)
        self._log_compile_decision()
        if self.compiled:
            self._compile_models()

    def _end_untimed(self) -> None:
        if self.step_timer is not None:  # a resumed sitting with fewer steps left than the timing needs
            self.step_timer, self.compiled = None, False
            self.compile_reason = "compile=auto: the sitting ended before its first steps were timed"
            self._log_compile_decision()

    def _log_compile_decision(self) -> None:
        # the decision goes to metrics.jsonl; the console hears of it only when compiling (a long next step)
        self.logger.record("compile", self.progress.step, {"compiled": self.compiled, "reason": self.compile_reason})
        if self.compiled:
            self.logger.info(f"compiling the forward passes ({self.compile_reason}); the next steps take longer")
