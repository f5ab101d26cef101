"""`kdforge export RUN --format safetensors|onnx|pt2|torchscript --out FILE`: the distilled student alone (no method
heads, no teacher), with a JSON beside it saying how to feed it (architecture, classes, input size and
normalisation) and what it scored (the run's test top-1, the hash of its config). `--check N` runs N real test
images through the exported file (onnxruntime, `torch.export.load`, TorchScript or the safetensors weights in a
fresh model) and records the largest logit difference to PyTorch in that JSON. `pt2` is torch.export's program,
the format PyTorch recommends in place of TorchScript (which it has deprecated; kept for older consumers)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from kdforge.errors import UserError
from kdforge.fileio import atomic_write_json

FORMATS = ("safetensors", "onnx", "pt2", "torchscript")
# (channels, height, width) of each in-memory dataset's images; image folders use the run's data.image_size
INPUT_SHAPES = {"cifar10-jpeg": (3, 32, 32), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32),
                "fashion-mnist": (1, 28, 28), "digits": (1, 8, 8)}


def _load_student(run: Path) -> tuple[torch.nn.Module, dict, dict]:
    from kdforge.engine.checkpoint import final_folder, load_weights
    from kdforge.engine.models import load_model

    state, meta = load_weights(run)
    if meta.get("format") != "kdforge" or not meta.get("arch"):
        raise UserError(f"{run} is not a kdforge run or checkpoint (it names no architecture); export a run folder")
    config = json.loads(meta["config"]) if isinstance(meta.get("config"), str) else {}
    dataset = meta.get("dataset") or config.get("data", {}).get("dataset")
    size = config.get("data", {}).get("image_size", 224)
    shape = INPUT_SHAPES.get(dataset, (3, size, size))
    model = load_model(run, meta["arch"], meta.get("num_classes"), shape[0])
    summary_path = (Path(run) if Path(run).is_dir() else Path(run).parent) / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    meta = {**meta, "input_shape": shape, "dataset": dataset, "config": config,
            "final_folder": str(final_folder(run)) if Path(run).is_dir() else str(run)}
    return model.eval(), meta, summary


def _write(model: torch.nn.Module, fmt: str, out: Path, example: torch.Tensor) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    elif fmt == "pt2":
        program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, str(out))
    elif fmt == "torchscript":
        torch.jit.save(torch.jit.trace(model, example), str(out))
    else:
        try:
            import onnx  # noqa: F401  (the exporter needs it)
        except ImportError:
            raise UserError("ONNX export needs the onnx extra: pip install 'kdforge[export]'") from None
        torch.onnx.export(model, (example,), str(out), input_names=["input"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False,
                          verbose=False)


def _reload(fmt: str, out: Path, model: torch.nn.Module, meta: dict):
    """A function from a batch of inputs to logits, read back from the exported file."""
    if fmt == "torchscript":
        scripted = torch.jit.load(str(out))
        return lambda x: scripted(x)
    if fmt == "pt2":
        program = torch.export.load(str(out)).module()
        return lambda x: program(x)
    if fmt == "safetensors":
        from safetensors.torch import load_file

        from kdforge.engine.models import build_model, classifier_width

        fresh = build_model(meta["arch"], classifier_width(model.state_dict()), meta["input_shape"][0])
        fresh.load_state_dict(load_file(str(out)))
        fresh.eval()
        return lambda x: fresh(x)
    try:
        import onnxruntime
    except ImportError:
        raise UserError("checking an ONNX export needs onnxruntime: pip install 'kdforge[export]'") from None
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def _test_images(meta: dict, count: int, data_root: str | None) -> torch.Tensor:
    from kdforge.data import DataConfig, load_data

    bundle = load_data(DataConfig(dataset=meta["dataset"], root=data_root, classes=meta["config"].get("data", {})
                                  .get("classes"), eval_batch_size=count), "cpu")
    stream = bundle.stream("test", count, train=False)
    return next(iter(stream.epoch(0))).input


def export(run: str, fmt: str, out: str, check: int = 0, data_root: str | None = None) -> dict:
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    run_path, out_path = Path(run), Path(out)
    model, meta, summary = _load_student(run_path)
    from kdforge.data import DATASETS
    from kdforge.memory.incontext import fingerprint

    spec = DATASETS.get(meta["dataset"]) if meta["dataset"] in DATASETS else None
    example = torch.zeros(2, *meta["input_shape"])
    _write(model, fmt, out_path, example)
    card = {
        "format": fmt, "file": out_path.name, "bytes": out_path.stat().st_size, "architecture": meta["arch"],
        "classes": meta.get("classes"), "num_classes": len(meta.get("classes") or []) or None,
        "input": {"shape": list(meta["input_shape"]), "layout": "NCHW, float32",
                  "normalisation": "x = (pixel / 255 - mean) / std, per channel",
                  "mean": list(spec.mean) if spec else None, "std": list(spec.std) if spec else None},
        "test_top1": summary.get("top1_last"), "dataset": meta["dataset"],
        "config_hash": fingerprint(json.dumps(meta["config"], sort_keys=True))[:16] if meta["config"] else None,
        "source": str(run_path),
    }
    if check:
        images = _test_images(meta, check, data_root)
        with torch.no_grad():
            expected = model(images)
            got = _reload(fmt, out_path, model, meta)(images)
        card["check"] = {"images": int(images.shape[0]), "max_abs_logit_difference": float((got - expected).abs().max()),
                         "same_top1": float((got.argmax(1) == expected.argmax(1)).float().mean())}
    atomic_write_json(out_path.with_name(out_path.name + ".json"), card)
    return card
