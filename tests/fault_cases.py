"""The bad-input cases of the fault battery, shared by tests/test_faults.py and bench/fault_battery.py.

Each case prepares whatever files it needs in a scratch folder and returns the CLI arguments; kdforge
must answer with exit code 2, one line on stderr, no traceback, and nothing half-written.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

DIGITS = ["digits-student", "threads=1", "tensorboard=false"]


def _train(tmp: Path, *extra: str) -> list[str]:
    return ["train", *DIGITS, f"out={tmp / 'run'}", *extra]


def _teacher_file(tmp: Path, arch="cnn8", classes=10, name="teacher.pth") -> Path:
    from kdforge.models import create_model

    path = tmp / name
    torch.save({"model": create_model(arch, classes, **({"in_channels": 1} if arch.startswith(("cnn", "mlp")) else {}))
                .state_dict()}, path)
    return path


def _malicious(tmp: Path) -> Path:
    class RunsCode:
        def __reduce__(self):
            return (print, ("code ran while loading a checkpoint",))

    path = tmp / "malicious.pth"
    path.write_bytes(pickle.dumps({"model": RunsCode()}))
    return path


def _corrupt_kdforge_checkpoint(tmp: Path) -> Path:
    from kdforge.engine.checkpoint import save_checkpoint
    from kdforge.models import create_model

    folder = tmp / "teacher_run"
    save_checkpoint(folder, {"arch": "cnn8", "model": create_model("cnn8", 10).state_dict()})
    blob = bytearray((folder / "checkpoint.pt").read_bytes())
    blob[-100] ^= 0xFF
    (folder / "checkpoint.pt").write_bytes(bytes(blob))
    return folder / "checkpoint.pt"


def _truncated_torch_file(tmp: Path) -> Path:
    path = _teacher_file(tmp)
    path.write_bytes(path.read_bytes()[:3000])
    return path


def _truncated_cifar(tmp: Path) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        payload = pickle.dumps({b"data": np.zeros((10, 3072), np.uint8), b"labels": [0] * 10}, protocol=2)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    root = tmp / "cifar"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return root


def _idx(tmp: Path, size=28, truncate=False) -> Path:
    root = tmp / "fmnist"
    root.mkdir()
    for prefix, n in (("train", 20), ("t10k", 10)):
        images = np.zeros((n, size, size), np.uint8)
        labels = np.arange(n) % 10
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            raw = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            raw += array.astype(np.uint8).tobytes()
            if truncate and "images" in name:
                raw = raw[:-50]
            (root / f"{name}.gz").write_bytes(gzip.compress(raw))
    return root


def _file_in_the_way(tmp: Path) -> Path:
    blocker = tmp / "not_a_folder"
    blocker.write_text("a file where the run folder should go")
    return blocker


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


# (name, area, builder(tmp) -> CLI args, text the one-line message must contain)
CASES = [
    ("unknown config key", "config", lambda t: _train(t, "optim.lrr=0.1"), "unknown config key"),
    ("wrong type", "config", lambda t: _train(t, "epochs=abc"), "must be of type int"),
    ("unknown method", "config", lambda t: _train(t, "method=kdd"), "unknown method"),
    ("unknown student model", "models", lambda t: _train(t, "student=resnet9"), "unknown model"),
    ("unknown dataset", "data", lambda t: _train(t, "data.dataset=cifar1000"), "unknown dataset"),
    ("zero batch size", "config", lambda t: _train(t, "data.batch_size=0"), "batch_size"),
    ("negative epochs", "config", lambda t: _train(t, "epochs=-3"), "epochs"),
    ("negative learning rate", "config", lambda t: _train(t, "optim.lr=-0.1"), "optim.lr"),
    ("zero per-class subset", "config", lambda t: _train(t, "data.train_per_class=0"), "train_per_class"),
    ("YAML that builds objects", "config",
     lambda t: ["train", str(_write(t, "evil.yaml", "student: !!python/object/apply:os.system ['echo owned']\n"))],
     "not valid YAML"),
    ("YAML that is not a mapping", "config", lambda t: ["train", str(_write(t, "list.yaml", "- 1\n- 2\n"))], "mapping"),
    ("YAML syntax error", "config", lambda t: ["train", str(_write(t, "bad.yaml", "epochs: [1, 2\n"))], "not valid YAML"),
    ("missing config file", "cli", lambda t: ["train", str(t / "missing.yaml")], "does not exist"),
    ("override without '='", "cli", lambda t: _train(t, "epochs"), "key=value"),
    ("eval of a missing checkpoint", "cli", lambda t: ["eval", str(t / "nothing"), "--dataset", "digits"], "does not exist"),
    ("eval of a state dict without --model", "cli",
     lambda t: ["eval", str(_teacher_file(t)), "--dataset", "digits"], "--model"),
    ("dataset not where it is looked for", "data",
     lambda t: _train(t, "data.dataset=cifar100", f"data.root={t / 'empty'}", "student=resnet8"), "not found"),
    ("truncated CIFAR archive", "data",
     lambda t: _train(t, "data.dataset=cifar10", f"data.root={_truncated_cifar(t)}", "student=resnet8"), "truncated"),
    ("truncated IDX file", "data",
     lambda t: _train(t, "data.dataset=fashion-mnist", f"data.root={_idx(t, truncate=True)}", "student=cnn28_small"),
     "truncated"),
    ("class list out of range", "data", lambda t: _train(t, "data.classes=[3,42]"), "data.classes"),
    ("subset larger than a class", "data", lambda t: _train(t, "data.train_per_class=5000"), "per class"),
    ("teacher checkpoint missing", "checkpoints",
     lambda t: _train(t, "method=kd", f"teacher_checkpoint={t / 'none.pth'}"), "does not exist"),
    ("no teacher for a distillation method", "checkpoints", lambda t: _train(t, "method=kd"), "needs a teacher"),
    ("corrupted kdforge checkpoint", "checkpoints",
     lambda t: _train(t, "method=kd", f"teacher_checkpoint={_corrupt_kdforge_checkpoint(t)}"), "corrupted"),
    ("malicious pickle", "checkpoints",
     lambda t: _train(t, "method=kd", "teacher=cnn8", f"teacher_checkpoint={_malicious(t)}"), "arbitrary code"),
    ("truncated torch file", "checkpoints",
     lambda t: _train(t, "method=kd", "teacher=cnn8", f"teacher_checkpoint={_truncated_torch_file(t)}"), "truncated"),
    ("foreign checkpoint of another architecture", "checkpoints",
     lambda t: _train(t, "method=kd", "teacher=cnn8", f"teacher_checkpoint={_teacher_file(t, 'mlp8')}"),
     "does not match the architecture"),
    ("teacher with another class count", "checkpoints",
     lambda t: _train(t, "method=kd", "teacher=cnn8", f"teacher_checkpoint={_teacher_file(t, classes=100)}"),
     "100 classes"),
    ("3-channel model on grayscale data", "models", lambda t: _train(t, "student=resnet20"), "3-channel"),
    ("model for another input size", "models",
     lambda t: _train(t, "data.dataset=fashion-mnist", f"data.root={_idx(t)}", "student=mlp8"), "cannot take"),
    ("absurd learning rate: non-finite loss", "config",
     lambda t: _train(t, "optim.lr=1e12", "optim.momentum=0", "optim.schedule=constant", "epochs=3"), "non-finite"),
    ("unwritable output folder", "output", lambda t: ["train", *DIGITS, "out=/proc/kdforge-run"], "run folder"),
    ("output path is a file", "output", lambda t: ["train", *DIGITS, f"out={_file_in_the_way(t)}"], "run folder"),
]


def torn_files(folder: Path) -> list[Path]:
    """Published files a later step reads that a crash left damaged: checkpoints failing their checksum,
    JSON files that do not parse, record files with a line that does not parse. (A kill during a write can
    leave the write's own temporary file behind: it is never read, and the next run removes it; see
    `stale_temporaries`.)"""
    import json

    from kdforge.engine.checkpoint import read_checkpoint
    from kdforge.errors import CheckpointError

    torn = []
    for p in folder.rglob("checkpoint*.pt"):
        try:
            read_checkpoint(p)
        except CheckpointError:
            torn.append(p)
    for p in folder.rglob("*.json"):
        try:
            json.loads(p.read_text())
        except ValueError:
            torn.append(p)
    for p in folder.rglob("*.jsonl"):
        try:
            [json.loads(line) for line in p.read_text().splitlines()]
        except ValueError:
            torn.append(p)
    return torn


def stale_temporaries(folder: Path) -> list[Path]:
    return list(folder.rglob(".*.tmp"))
