"""The run around the training loop: the device, bf16 autocast, the run folder's lock, stop signals and the library
versions recorded with every run."""

from __future__ import annotations

import contextlib
import json
import platform
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import kdforge
from kdforge.collective import all_reduce_
from kdforge.engine.distributed import peer_failure, shutdown
from kdforge.errors import ConfigError, FolderInUseError, PeerFailedError, TrainingStopped, UserError
from kdforge.fileio import read_records


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available; use device=cpu")
    return device


def autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def amp_decision(setting, device: torch.device) -> tuple[bool, str]:
    """(whether a run trains and evaluates in bf16 autocast, why) for the `amp` setting on `device`. auto turns it on
    where bf16 matrix products run in hardware: a CUDA GPU with native bf16, a CPU with AMX-BF16 tiles, where a
    resnet8 training step measured 1.69x as fast as float32 (results/student_step_speed.json). Elsewhere bf16 is
    emulated or unmeasured, and the run stays in float32. Accuracy: the paper regime's bf16 rows tie their float32
    rows, paired by seed (`ce-bf16`, `kd-bf16` in results/cifar10-paper-cpu-e240.md)."""
    if setting is True or setting is False:
        return setting, f"amp={str(setting).lower()}"
    if device.type == "cuda":
        native = _cuda_has_native_bf16()
        return native, "amp=auto: " + ("the GPU has native bf16" if native else "the GPU lacks native bf16")
    if device.type == "cpu":
        tiles = _cpu_has_amx_bf16()
        return tiles, "amp=auto: " + ("the CPU has AMX-BF16 tiles" if tiles else "the CPU has no AMX-BF16 tiles")
    return False, f"amp=auto: no bf16 rule for {device.type}"


def _cuda_has_native_bf16() -> bool:
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch before the argument existed: its answer already meant native bf16
        return torch.cuda.is_bf16_supported()


def _cpu_has_amx_bf16() -> bool:
    """torch.cpu.get_capabilities is recent; older torch builds answer through their private AMX probe (every CPU
    with AMX tiles so far has the BF16 unit)."""
    if hasattr(torch.cpu, "get_capabilities"):
        return bool(torch.cpu.get_capabilities().get("amx_bf16"))
    probe = getattr(getattr(torch._C, "_cpu", None), "_is_amx_tile_supported", None)
    return bool(probe()) if probe is not None else False


def first_sitting_amp(folder: Path) -> tuple[bool, str] | None:
    """The amp decision the first sitting of a run recorded in its metrics.jsonl (None when there is none): a run
    resumed on other hardware keeps it, so that `auto` never changes a run's arithmetic halfway."""
    for line in read_records(Path(folder) / "metrics.jsonl"):
        record = json.loads(line)
        if record.get("type") == "amp":
            return bool(record["amp"]), record["reason"]
    return None


def versions() -> dict:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    # the CPU's vector unit decides CPU speeds (bf16 autocast is fast with AVX512-BF16 / AMX, emulated on AVX2), so
    # a run's wall time is read beside it
    return {"kdforge": kdforge.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "git": rev, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


class RunLock:
    """An exclusive lock on a run folder: two runs never write the same folder."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self.handle = None

    def __enter__(self):
        import fcntl

        try:
            self.handle = open(self.path, "w")
        except OSError as exc:
            raise UserError(f"cannot write to run folder {self.path.parent}: {exc.strerror}; choose a writable out=") from None
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.close()
            raise FolderInUseError(f"run folder {self.path.parent} is in use by another kdforge run; choose another "
                                   "out=") from None
        return self

    def __exit__(self, *exc):
        self.handle.close()


@contextlib.contextmanager
def stop_signals(owner, stopping: Callable[[BaseException], bool] = lambda exc: False):
    """SIGTERM / SIGINT ask the run to stop after the current step, with a checkpoint; a second SIGINT
    interrupts at once. The signal that arrived is kept in `owner.stop_signal` (None until one does).

    A block that ends with an exception for which `stopping` is true leaves SIGTERM ignored rather than restored:
    the process is already on its way out, and a launcher's SIGTERM (torchrun sends one to every rank once one has
    died) must not kill it silently before it has said why it stopped."""
    owner.stop_signal = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum, frame):
        if owner.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        owner.stop_signal = signum

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    except BaseException as exc:
        if stopping(exc):
            previous[signal.SIGTERM] = signal.SIG_IGN
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class RunMixin:
    """A Trainer's life as a run: the folder and its lock, stop signals (agreed across ranks), another rank's death,
    wall-time accounting."""

    def fit(self) -> dict:
        self._setup_runtime()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create run folder {self.folder}: {exc.strerror}; choose a writable out=") from None
        lock = RunLock(self.folder) if self.dist.is_main else contextlib.nullcontext()
        peer_failed = False
        try:
            with lock, stop_signals(self, self._peer_failed):
                if self.dist.is_main:
                    for stale in self.folder.glob(".*.tmp"):  # temporaries of a write that a kill interrupted
                        stale.unlink(missing_ok=True)
                result = self._fit_locked()
                if self.dist.enabled:  # inside the block, so that a peer dying here is handled as in training
                    torch.distributed.barrier()  # rank 0's files are written before any process moves on
            return result
        except RuntimeError as exc:
            if not self._peer_failed(exc):
                raise
            peer_failed = True
            raise PeerFailedError(
                f"another process of this {self.dist.world_size}-process run died ({_first_line(exc)}); "
                f"rank {self.dist.rank} stopped too. The last checkpoint in {self.folder} is intact: relaunch the same "
                "torchrun command with --resume") from None
        finally:
            if self.dist.enabled and not self.keep_process_group and not peer_failed:
                shutdown()  # (a group with a dead member cannot be torn down cleanly: the process exit does it)

    def _peer_failed(self, exc: BaseException) -> bool:
        """Whether `exc` says that another process of this torchrun run died."""
        return self.dist.enabled and isinstance(exc, RuntimeError) and peer_failure(exc)

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


def _first_line(exc: BaseException) -> str:
    """The gist of a backend error: its first line without the source-location prefix, at most 100 characters."""
    line = re.sub(r"^\[[^\]]*\]\s*", "", (str(exc).strip().splitlines() or [""])[0])
    return line[:100]
