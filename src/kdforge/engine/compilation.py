"""Whether a run compiles its networks (`compile: true | false | auto`), and the trainer's side of it: the student,
the frozen teacher and the networks a method trains beside them (peers), compiled in place at set-up."""

from __future__ import annotations

import torch
import torch.nn as nn

# `compile: auto` compiles a run of at least this many optimiser steps. bench/compile_speed.py measured a compiled
# kd step (resnet56 -> resnet20, 2 CPU threads) recovering its ~76 s compile after ~120 steps; smaller models gain
# less per step and evaluation compiles its own graphs, hence the wide margin. (A rule that timed the first eager
# steps was tried and withdrawn: on a loaded machine its timings misjudged small models, and a compile made in the
# middle of a run is a path the whole method zoo has not been tested on.)
AUTO_COMPILE_MIN_STEPS = 2000
# A compiled forward meets a bounded set of states in one run (training and evaluation, grad and inference modes, a
# fixed and a dynamic batch size, a method's second stage adding its own feature hooks), each a graph of its own.
# Dynamo's default limit (8) is below what a two-stage method reaches; past it (one warning) the forward runs eager
# for the rest of the run, at about half the speed.
RECOMPILE_LIMIT = 32


def compile_decision(setting, steps: int, device: torch.device) -> tuple[bool, str]:
    """(whether to torch.compile the student and teacher forward, why) for the `compile` setting of a run of
    `steps` optimiser steps on `device`."""
    if setting is True:
        return True, "compile=true"
    if setting is False:
        return False, "compile=false"
    if steps < AUTO_COMPILE_MIN_STEPS:
        return False, f"compile=auto: {steps} steps are too few to recover the compile time (< {AUTO_COMPILE_MIN_STEPS})"
    missing = _missing_toolchain(device)
    if missing:
        return False, f"compile=auto: {missing}"
    return True, f"compile=auto: {steps} steps recover the compile time (>= {AUTO_COMPILE_MIN_STEPS})"


def _missing_toolchain(device: torch.device) -> str | None:
    """What torch.compile's default backend lacks here (None when nothing): a C++ compiler on CPU, Triton on CUDA."""
    import importlib.util
    import shutil

    if device.type == "cuda":
        return None if importlib.util.find_spec("triton") else "Triton is not installed"
    if device.type == "cpu":
        return None if any(shutil.which(c) for c in ("g++", "c++", "clang++")) else "no C++ compiler on PATH"
    return f"no compile backend chosen for {device.type}"


def compile_in_place(models) -> None:
    """torch.compile each model in place (nn.Module.compile: parameter names and checkpoints stay those of the plain
    model), forgetting every graph compiled before in this process. Dynamo does not guard on module hooks
    (`skip_nnmodule_hook_guards`), so a forward compiled for one run's network is reused for the next run's network of
    the same class (a sweep, a suite's rows, a second stage) even when that one carries feature hooks the first did
    not: the hooks never fire and the method reads no features. Starting each run from no graphs makes it compile as
    it would alone in its own process."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    for model in models:
        model.compile()


class CompileMixin:
    """A Trainer's compile decision, made at set-up and logged as the first record of metrics.jsonl."""

    def decide_compile(self, steps: int) -> bool:
        """Whether this run compiles: decided once, by the first caller (a task's set-up may need it to pick the
        student's layout before the trainer compiles anything)."""
        if self.compile_reason is None:  # the Trainer starts it at None
            self.compiled, self.compile_reason = compile_decision(self.cfg.compile, steps, self.device) \
                if self.task.compilable else (False, f"{self.task.name} models run eager")
        return self.compiled

    def _compile_models(self) -> None:
        if self.compiled:
            compile_in_place(self._models_to_compile())

    def _models_to_compile(self) -> list[nn.Module]:
        return [m for m in (self.student, self.teacher_forward, *self.method.modules_to_compile()) if m is not None]

    def _log_compile_decision(self) -> None:
        # the decision goes to metrics.jsonl; the console hears of it only when compiling (a long first step)
        self.logger.record("compile", 0, {"compiled": self.compiled, "reason": self.compile_reason})
        if self.compiled:
            self.logger.info(f"compiling the forward passes ({self.compile_reason}); the first steps take longer")
