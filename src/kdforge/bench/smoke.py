"""Smoke grids for the suites that need a GPU and data this machine lacks (CIFAR-100, ImageNet): every cell's
config is built from its preset and validated, then trained for two steps on tiny random data written in
the dataset's real on-disk format, against a randomly initialised teacher of the cell's architecture.
A cell that passes here runs unchanged on the real data (data.root=...)."""

from __future__ import annotations

import csv
import io
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kdforge.config import list_presets, load_config
from kdforge.errors import NotApplicableError, UserError
from kdforge.fileio import atomic_write_text

CIFAR100_PAIRS = ("resnet56-resnet20", "resnet110-resnet32", "resnet32x4-resnet8x4", "wrn_40_2-wrn_16_2",
                  "wrn_40_2-wrn_40_1", "vgg13-vgg8", "vgg13-MobileNetV2", "ResNet50-MobileNetV2",
                  "resnet32x4-ShuffleV1", "resnet32x4-ShuffleV2", "wrn_40_2-ShuffleV1")
IMAGENET_PAIRS = ("r34-r18", "r50-mv1")
SMOKE_BATCH = 8  # two steps of 8 images: the recipe's batch size is a number, not code that can break
ROW_ARGS = {"refilled": ["data.val_per_class=50"]}  # REFILLED selects stage 1 on a held-out split
# a logit method with logit standardisation: a preset of its own per cell, cifar100-METHOD-logitstd-PAIR
LOGIT_STD_ROWS = ("kd+logitstd", "dkd+logitstd")


def cells(suite: str) -> list[tuple[str, str, str, list[str]]]:
    """(cell, method row, preset, overrides) for every cell of a smoke suite."""
    from kdforge.methods import METHODS

    presets = set(list_presets())
    out = []
    if suite == "cifar100-grid":
        rows = list(METHODS.names())  # IC-KD's paradigms are registered methods (ickd, ickd_online, ickd_tf)
        for pair in CIFAR100_PAIRS:
            for row in LOGIT_STD_ROWS:
                out.append((pair, row, f"cifar100-{row.replace('+', '-')}-{pair}", []))
            for row in rows:
                method = row
                own = f"cifar100-{method}-{pair}"
                if own in presets and row not in ROW_ARGS:
                    out.append((pair, row, own, []))
                elif row == "kd":
                    out.append((pair, row, f"cifar100-{pair}", []))
                else:  # the pair's recipe with the method's own defaults
                    out.append((pair, row, f"cifar100-{pair}", [f"method={method}",
                                                                 *ROW_ARGS.get(row, [])]))
    elif suite == "imagenet":
        for pair in IMAGENET_PAIRS:
            for row in ("kd", "ckd", "dkd", "dist", "kd+logitstd"):
                preset = f"imagenet-{row.replace('+', '-')}-{pair}"
                if preset in presets:
                    out.append((pair, row, preset, []))
    else:
        raise UserError(f"suite {suite!r} has no smoke grid; smoke grids: cifar100-grid, imagenet")
    return out


def validate(suite: str) -> list[tuple[str, str]]:
    """Build every cell's config; (cell/method, error) for each that fails (empty when all are valid)."""
    failures = []
    for cell, row, preset, overrides in cells(suite):
        try:
            cfg = load_config(preset, overrides)
            from kdforge.methods import METHODS

            METHODS.get(cfg.method).Config  # the method exists
            from kdforge.config import from_dict

            from_dict(METHODS.get(cfg.method).Config, cfg.method_args, "method_args")
        except UserError as exc:
            failures.append((f"{cell}/{row}", str(exc)))
    return failures


# --- tiny data in the real formats -----------------------------------------------------------------------

def write_tiny_cifar100(root: Path, n_train: int, n_test: int) -> Path:
    rng = np.random.RandomState(0)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        labels = [int(v) for v in rng.randint(0, 100, size=n)]
        entry = {b"data": rng.randint(0, 256, size=(n, 3072), dtype=np.uint8), b"fine_labels": labels,
                 b"coarse_labels": [v // 5 for v in labels], b"batch_label": name.encode()}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"class{i}".encode() for i in range(100)]},
                                               protocol=2))
    return root


def write_tiny_imagefolder(root: Path, classes: int, per_class: int, size: int = 64) -> Path:
    from PIL import Image

    rng = np.random.RandomState(0)
    for split, n in (("train", per_class), ("val", 2)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.randint(0, 256, size=(size, size, 3), dtype=np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="JPEG")
                (folder / f"{i}.jpg").write_bytes(buffer.getvalue())
    return root


def random_teacher(arch: str, num_classes: int, folder: Path) -> Path:
    from kdforge.engine.models import build_model

    path = folder / f"{arch}-{num_classes}.pt"
    if not path.exists():
        torch.manual_seed(0)
        torch.save({"model": build_model(arch, num_classes, 3).state_dict()}, path)
    return path


# --- running ----------------------------------------------------------------------------------------------

def smoke_cell(preset: str, overrides: list[str], data_root: Path, teachers: Path, out: Path,
               num_classes: int, threads: int) -> float:
    from kdforge.engine.pipeline import train
    from kdforge.methods import METHODS

    base = load_config(preset, overrides)
    stages = max(1, len(METHODS.get(base.method).pipeline(base)))  # one epoch per stage (the stages' overrides)
    extra = [f"data.root={data_root}", f"data.batch_size={SMOKE_BATCH}", f"data.eval_batch_size={SMOKE_BATCH}",
             "data.workers=0", f"epochs={stages}", f"threads={threads}", "progress=false", "tensorboard=false",
             "checkpoint_every=0", f"out={out}", "device=cpu"]
    if base.data.val_per_class:  # the tiny data has a few images per class: hold out one
        extra.append("data.val_per_class=1")
    if base.data.dataset == "imagefolder":
        extra += ["data.image_size=64", "amp=false"]
    if METHODS.get(base.method).uses_teacher(base.method_args):
        extra.append(f"teacher_checkpoint={random_teacher(base.teacher, num_classes, teachers)}")
    start = time.perf_counter()
    train(load_config(preset, overrides + extra), echo=lambda m: None)
    return time.perf_counter() - start


def run_smoke(suite: str, results: Path = Path("results"), threads: int = 2, only: list[str] | None = None,
              echo=print) -> Path:
    todo = [c for c in cells(suite) if not only or c[1] in only or c[0] in only]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kdforge-smoke-") as tmp:
        tmp = Path(tmp)
        if suite == "cifar100-grid":
            data_root, classes = write_tiny_cifar100(tmp / "data", 2 * SMOKE_BATCH, SMOKE_BATCH), 100
            # cells that hold out a validation split get 100 more images to carve it from
            val_root = write_tiny_cifar100(tmp / "data-val", 2 * SMOKE_BATCH + 100, SMOKE_BATCH)
        else:
            data_root, classes = write_tiny_imagefolder(tmp / "data", 3, SMOKE_BATCH * 2 // 3 + 1), 3
            val_root = write_tiny_imagefolder(tmp / "data-val", 3, SMOKE_BATCH * 2 // 3 + 2)
        (tmp / "teachers").mkdir()
        for i, (cell, row, preset, overrides) in enumerate(todo, 1):
            try:
                root = val_root if load_config(preset, overrides).data.val_per_class else data_root
                seconds = smoke_cell(preset, overrides, root, tmp / "teachers", tmp / "runs" / f"{cell}-{row}",
                                     classes, threads)
                rows.append({"cell": cell, "method": row, "preset": preset, "status": "ok",
                             "seconds": f"{seconds:.1f}", "detail": " ".join(overrides)})
            except NotApplicableError as exc:  # the method cannot work for this pair by construction
                rows.append({"cell": cell, "method": row, "preset": preset, "status": "n/a", "seconds": "",
                             "detail": str(exc).splitlines()[0][:200]})
            except (UserError, RuntimeError, ValueError) as exc:
                rows.append({"cell": cell, "method": row, "preset": preset, "status": "failed", "seconds": "",
                             "detail": str(exc).splitlines()[0][:200]})
            echo(f"  [{i}/{len(todo)}] {cell} {row}: {rows[-1]['status']}")
    return write_smoke_results(suite, rows, results)


def write_smoke_results(suite: str, rows: list[dict], results: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["cell", "method", "preset", "status", "seconds", "detail"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(results / f"{suite}-smoke.csv", buffer.getvalue())
    methods = list(dict.fromkeys(r["method"] for r in rows))
    grid = {(r["cell"], r["method"]): r["status"] for r in rows}
    lines = [f"# {suite}: smoke grid", "",
             "Not an accuracy result. This machine has no GPU and no copy of the dataset, so `kdforge bench smoke "
             f"{suite}` builds every cell's config from its preset, validates it, and trains it for two steps "
             f"(batch {SMOKE_BATCH}) on tiny random data written in the dataset's real format against a randomly "
             "initialised teacher of the cell's architecture.", "",
             f"{sum(r['status'] == 'ok' for r in rows)} of {len(rows)} cells ran; "
             f"{sum(r['status'] == 'n/a' for r in rows)} are not applicable (n/a: the method cannot work for the pair "
             f"by construction, listed below); {sum(r['status'] == 'failed' for r in rows)} failed.", "",
             "| cell | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for cell in dict.fromkeys(r["cell"] for r in rows):
        lines.append(f"| {cell} | " + " | ".join(grid.get((cell, m), "") for m in methods) + " |")
    for status, title in (("n/a", "Not applicable:"), ("failed", "Failures:")):
        listed = [r for r in rows if r["status"] == status]
        if listed:
            lines += ["", title, *[f"- {r['cell']} / {r['method']}: {r['detail']}" for r in listed]]
    path = results / f"{suite}-smoke.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
