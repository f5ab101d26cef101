"""Teacher-output cache: a frozen teacher's logits (and embedding) for every augmented view a run sees.

Augmentation is a function of (seed, epoch, dataset index), so the teacher's output for a sample in an
epoch is the same in every run with the same teacher, data, seed and global batch. The first run to train an
epoch records the outputs on the device and writes them at the epoch's end (one file per tensor, `.npy`,
memory-mappable, written atomically, then a `.done` marker); later runs — another method, another sitting,
a resumed run — replay the epoch and never run the teacher forward.

The cache folder is named by a hash of everything that decides the outputs (teacher weights, training
images and labels, augmentation, seed, global batch, stored tensors and dtype); a folder whose recorded key
differs is ignored, never mixed in. It stores the embedding beside the logits whenever the teacher declares one,
also for a method that reads the logits alone, so that every cache-capable method of a suite replays one
recording. Values are stored in float16 by default; the method sees the stored
(rounded) values in the recording run too, so a cached and an uncached run of the same seed train alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from kdforge.collective import all_reduce_
from kdforge.fileio import atomic_write_bytes, atomic_write_text
from kdforge.models import ModelOutput

DTYPES = {"float16": (torch.float16, np.float16), "float32": (torch.float32, np.float32)}


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def cached_taps(teacher: torch.nn.Module, method_taps: tuple[str, ...]) -> tuple[str, ...]:
    """The teacher taps a cache records beside the logits: the embedding when the teacher declares one (the
    embedding of a CIFAR teacher is 64 numbers a sample, a few times its 10 logits: cheap beside a second recording
    of the same views for the methods that read it), else what the method reads."""
    from kdforge.models.base import model_info

    try:
        model_info(teacher)
    except AttributeError:  # a bare user model: no declared embedding to record
        return tuple(sorted(method_taps))
    return ("embedding",)


class TeacherCache:
    def __init__(self, root: Path, key: str, size: int, expected: int, dtype: str, device: torch.device,
                 is_main: bool = True, log=print):
        self.folder = Path(root) / "teacher-outputs" / key
        self.key, self.size, self.expected = key, size, expected  # expected: samples one epoch visits
        self.torch_dtype, self.np_dtype = DTYPES[dtype]
        self.device, self.is_main, self.log = device, is_main, log
        self.replaying: dict[str, torch.Tensor] | None = None
        self.recording: dict[str, torch.Tensor] | None = None
        self.complete = True
        self.hits = self.misses = 0

    def _done(self, epoch: int) -> Path:
        return self.folder / f"epoch-{epoch:04d}.done"

    def _array(self, epoch: int, name: str) -> Path:
        return self.folder / f"epoch-{epoch:04d}-{name}.npy"

    def begin_epoch(self, epoch: int, start_batch: int) -> bool:
        """Replay the epoch when a finished recording with this cache's key exists; else record it. Returns
        whether it replays. One host-side decision per epoch: the steps themselves never sync."""
        self.replaying = self.recording = None
        self.complete = start_batch == 0  # a run resumed mid-epoch cannot record the whole epoch
        marker = self._done(epoch)
        if marker.exists():
            try:
                meta = json.loads(marker.read_text())
            except (OSError, ValueError):
                meta = {}
            if meta.get("key") == self.key:
                self.replaying = {name: self._load(epoch, name) for name in meta["tensors"]}
                self.hits += 1
                self.log(f"teacher cache: epoch {epoch + 1} replayed from {self.folder}")
                return True
            self.log(f"teacher cache: ignoring {marker}: it was recorded under another key")
        self.misses += 1
        return False

    def _load(self, epoch: int, name: str) -> torch.Tensor:
        array = np.load(self._array(epoch, name), mmap_mode="r")
        if self.device.type == "cpu":
            return array  # memory-mapped; rows are read on demand
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)  # one transfer per epoch

    def lookup(self, index: torch.Tensor) -> ModelOutput:
        def rows(name):
            table = self.replaying[name]
            if isinstance(table, np.ndarray):  # CPU: index is a CPU tensor, no device sync
                return torch.from_numpy(np.asarray(table[index.numpy()])).float()
            return table.index_select(0, index).float()

        features = {"embedding": rows("embedding")} if "embedding" in self.replaying else {}
        return ModelOutput(rows("logits"), features)

    def record(self, index: torch.Tensor, out: ModelOutput) -> ModelOutput:
        """Store this batch's outputs in the epoch buffer; return them as stored (rounded to the cache dtype)."""
        tensors = {"logits": out.logits}
        if "embedding" in out.features:
            tensors["embedding"] = out.features["embedding"]
        if self.recording is None:
            # float32 buffers holding rounded values: summable across processes by any backend
            self.recording = {name: torch.zeros(self.size, t.shape[1], device=t.device) for name, t in tensors.items()}
            self.recording["_filled"] = torch.zeros(self.size, 1, device=index.device)
        stored = {}
        for name, t in tensors.items():
            value = t.detach().to(self.torch_dtype).float()
            self.recording[name].index_copy_(0, index, value)
            stored[name] = value
        self.recording["_filled"].index_fill_(0, index, 1)
        features = {"embedding": stored["embedding"]} if "embedding" in stored else {}
        return ModelOutput(stored["logits"], features)

    def end_epoch(self, epoch: int) -> None:
        """Publish a fully recorded epoch (every process's share summed in, only the main process writes)."""
        if self.recording is None or not self.complete:
            self.recording = None
            return
        for t in self.recording.values():
            all_reduce_(t)  # shares are disjoint: the sum is the union
        filled = int(self.recording.pop("_filled").float().sum().item())
        if filled != self.expected:
            self.log(f"teacher cache: epoch {epoch + 1} not written ({filled} of {self.expected} samples seen)")
            self.recording = None
            return
        if self.is_main:
            self.folder.mkdir(parents=True, exist_ok=True)
            size = 0
            for name, t in self.recording.items():
                payload = _npy_bytes(t.cpu().numpy().astype(self.np_dtype))
                atomic_write_bytes(self._array(epoch, name), payload)
                size += len(payload)
            atomic_write_text(self._done(epoch), json.dumps({"key": self.key, "tensors": list(self.recording),
                                                             "samples": filled}))
            self.log(f"teacher cache: epoch {epoch + 1} recorded ({size / 2**20:.1f} MiB) in {self.folder}")
        self.recording = None

    def stats(self) -> dict:
        size = sum(p.stat().st_size for p in self.folder.glob("*.npy")) if self.folder.exists() else 0
        total = self.hits + self.misses
        return {"folder": str(self.folder), "epochs_replayed": self.hits, "epochs_computed": self.misses,
                "hit_rate": self.hits / total if total else 0.0, "bytes": size}
