"""Checkpoints: atomic, checksummed, loaded without unpickling arbitrary objects.

kdforge's own files start with a magic line and a SHA-256 of the payload, so a truncated or
corrupted file is detected; the previous checkpoint is kept beside the latest one. Foreign state
dicts (plain torch files, `{"model": state_dict}` files of other KD codebases, safetensors) load too.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import warnings
from pathlib import Path

import torch

from kdforge.errors import CheckpointError
from kdforge.fileio import publish, write_temp

MAGIC = b"KDFORGE-CKPT-1\n"
LATEST, PREVIOUS = "checkpoint.pt", "checkpoint.prev.pt"


def _blob(payload: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    return MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def save_weights(path: Path, payload: dict) -> Path:
    """One atomic, checksummed file without rotation (the best epoch's weights, `best.pt`)."""
    publish(write_temp(path, _blob(payload)), path)
    return Path(path)


def save_checkpoint(folder: Path, payload: dict) -> Path:
    """Write `folder/checkpoint.pt` atomically, keeping the one before as `checkpoint.prev.pt`."""
    latest = Path(folder) / LATEST
    tmp = write_temp(latest, _blob(payload))  # a full disk fails here, before anything is rotated
    if latest.exists():
        os.replace(latest, Path(folder) / PREVIOUS)
    publish(tmp, latest)
    return latest


def _torch_load(source, where: str):
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr; the error says it all
            warnings.simplefilter("ignore")
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        named = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"it references {named.group(1)}" if named else "it holds objects other than tensors and containers"
        raise CheckpointError(
            f"refusing to load {where}: unpickling it would run arbitrary code ({what}); "
            "re-save it as a plain state_dict or as safetensors"
        ) from None
    except Exception as exc:  # zip/format errors: truncated or not a torch file
        raise CheckpointError(f"{where} is not a readable torch checkpoint ({type(exc).__name__}); is it truncated?") from None


def read_checkpoint(path: Path) -> dict:
    """Load one kdforge checkpoint, verifying its checksum."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    if not blob.startswith(MAGIC):
        raise CheckpointError(f"{path} is not a kdforge checkpoint")
    header_end = blob.index(b"\n", len(MAGIC))
    digest, body = blob[len(MAGIC):header_end].decode(), blob[header_end + 1:]
    if hashlib.sha256(body).hexdigest() != digest:
        raise CheckpointError(f"{path} is corrupted or truncated (checksum mismatch)")
    return _torch_load(io.BytesIO(body), str(path))


def latest_checkpoint(folder: Path, log=print) -> dict | None:
    """The newest intact checkpoint of a run folder (falls back to the previous one), or None."""
    folder = Path(folder)
    errors = []
    for name in (LATEST, PREVIOUS):
        path = folder / name
        if not path.exists():
            continue
        try:
            return read_checkpoint(path)
        except CheckpointError as exc:
            errors.append(str(exc))
            log(f"warning: {exc}; trying the previous checkpoint")
    if errors:
        raise CheckpointError(f"no intact checkpoint in {folder}: {errors[-1]}")
    return None


def final_folder(folder: str | os.PathLike) -> Path:
    """The folder holding a run's final state: the run folder, or for a method trained in stages (whose
    summary.json lists them) the last stage's sub-folder."""
    folder = Path(folder)
    summary = folder / "summary.json"
    if not (folder / LATEST).exists() and not (folder / "metrics.jsonl").exists() and summary.exists():
        import json

        stages = json.loads(summary.read_text()).get("stages")
        if stages:
            return folder / list(stages)[-1]
    return folder


def recorded_amp(record: dict, config: dict | None = None) -> bool:
    """Whether a run trained and evaluated in bf16 autocast, from what it recorded: the resolved decision (`amp` in
    its checkpoint or summary; amp=auto resolves per machine), else its config's explicit `amp: true` (runs from
    before the decision was recorded), else float32. `kdforge eval` and revalidation read a run back with it, so that
    a run's own split reads back its own figure."""
    if "amp" in record:
        return bool(record["amp"])
    return bool(config) and config.get("amp") is True


def load_weights(path: str | os.PathLike) -> tuple[dict, dict]:
    """(state_dict, metadata) from a kdforge run folder or checkpoint, a safetensors file, or a torch file
    holding a state dict directly or under "model"/"state_dict" (the layout of common KD teachers)."""
    path = Path(path)
    if path.is_dir():
        path = final_folder(path) / LATEST
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; train a teacher first or fix teacher_checkpoint")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError("reading .safetensors needs the safetensors package: pip install safetensors") from None
        try:
            return load_file(str(path)), {}
        except Exception as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from None
    with open(path, "rb") as f:
        ours = f.read(len(MAGIC)) == MAGIC
    obj = read_checkpoint(path) if ours else _torch_load(str(path), str(path))
    meta = {k: v for k, v in obj.items() if k not in ("model", "state_dict", "optimizer", "method")} \
        if isinstance(obj, dict) else {}
    state = obj
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "net"):
            if isinstance(obj.get(key), dict):
                state = obj[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict (expected tensors, or a 'model' entry holding them)")
    prefix = "module."  # saved from DataParallel / DDP
    if all(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state, meta


def load_into(model: torch.nn.Module, state: dict, where: str) -> None:
    """Strict load that forgives only BatchNorm's `num_batches_tracked` counters (absent in old files)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"{where} does not match the architecture ({detail}); check the model name")
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise CheckpointError(
                f"{where}: {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}; "
                "check the model name and the number of classes"
            )
    model.load_state_dict(state, strict=False)
