"""Typed configuration: dataclasses filled from YAML and `key=value` overrides, validated with
one-line errors (unknown keys get a suggestion, wrong types name the key and the expected type)."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kdforge.data import DataConfig
from kdforge.errors import ConfigError

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass
class OptimConfig:
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | step | constant
    milestones: list[int] = field(default_factory=list)  # epochs, for schedule=step
    gamma: float = 0.1
    warmup_epochs: float = 0.0  # linear warm-up from 0, in epochs (fractions allowed)
    min_lr: float = 0.0

    def __post_init__(self):
        if self.schedule not in ("cosine", "step", "constant"):
            raise ConfigError(f"optim.schedule must be cosine, step or constant, got {self.schedule!r}")
        if not self.lr > 0:
            raise ConfigError(f"optim.lr must be positive, got {self.lr}")
        if self.weight_decay < 0 or self.warmup_epochs < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("optim.weight_decay and optim.warmup_epochs must be >= 0 and optim.momentum in [0, 1)")


@dataclass
class DetectorConfig:
    """The two-stage detector of a `task: detection` run (torchvision's Faster R-CNN with FPN, around the
    `student` / `teacher` backbone). The defaults are CPU-sized; the COCO presets set the papers' sizes."""

    fpn_channels: int = 64
    proposals: int = 150  # RPN proposals kept per image after NMS (training and test)
    rois_per_image: int = 64  # RoIs sampled per image for the box head's losses (and the RoI-logit terms)
    box_head: int = 256  # width of the two-layer box head
    max_size: int | None = None  # the longer side's limit (None: data.image_size, square canvases)
    anchor_size: int | None = None  # the finest level's anchor side (None: data.image_size / 8), doubling per level
    train_sizes: list[int] = field(default_factory=list)  # multi-scale training: shorter sides drawn per batch
    backbone_weights: str | None = None  # a local file of the backbone's (e.g. ImageNet) weights; nothing downloaded
    first_level: int = 0  # zoo backbones: the first stage the FPN reads (1 skips a CIFAR network's full-size stage)

    def __post_init__(self):
        if min(self.fpn_channels, self.proposals, self.rois_per_image, self.box_head) < 1:
            raise ConfigError("detector.fpn_channels, proposals, rois_per_image and box_head must be >= 1")


# The config's second section: how a run is executed, not what it trains. Marked on the fields (RUN), read by
# `trained_settings`, which the suites' teacher keys, their finished-run checks and the resume check compare.
RUN = {"section": "run"}


@dataclass
class TrainConfig:
    # --- what is trained: model, method, data, optimiser, schedule, seed, and the settings that change the
    # arithmetic (bf16, compilation, memory layout, deterministic kernels, the folded teacher)
    task: str = "classification"  # classification | detection
    student: str = "mlp8"
    method: str = "ce"
    method_args: dict = field(default_factory=dict)
    teacher: str | None = None
    teacher_checkpoint: str | None = None
    init_checkpoint: str | None = None  # start the student from these weights (a fresh run only)
    teacher_fold_bn: bool = True  # run the frozen teacher with BatchNorm folded into its convolutions (exact up to rounding)
    # the folded teacher's memory layout: true | false | auto. auto is channels_last on CPU, where it measured 0.64x
    # the folded forward's time (results/teacher_forward_speed.json), and follows `channels_last` elsewhere
    teacher_channels_last: bool | str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)  # task: detection only
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 1
    seed: int = 0
    label_smoothing: float = 0.0
    # bf16 autocast on CPU and CUDA: true | false | auto. auto is bf16 where the hardware multiplies bf16 natively
    # (AMX-BF16 CPUs, bf16 GPUs) and float32 elsewhere; metrics.jsonl and summary.json say which and why (engine/run.py)
    amp: bool | str = "auto"
    # the student's memory layout: true | false | auto. auto is channels_last for an eager run on CPU, where an eager
    # training step measured 1.24-1.51x as fast for the zoo's ResNets, WRN and MobileNetV2 (1.02-1.09x for vgg8,
    # ShuffleV2, cnn8; 0.88x for the 25 ms cnn28_small step), and contiguous for a compiled run, where the layouts
    # measured within 0.97-1.06x but for MobileNetV2 (results/student_layout_speed.json), and off CPU
    channels_last: bool | str = "auto"
    # torch.compile of the student and teacher forward (hooks included): true | false | auto. auto compiles a run
    # long enough to recover the compile time (a minute or more, again per input shape) when a toolchain is
    # present, and runs short ones (the demo, the tests) eager; the run's log and summary.json say which and why
    # (engine/compilation.py)
    compile: bool | str = "auto"
    sync_batchnorm: bool = False  # torchrun only: BatchNorm statistics over the global batch
    eval_every: int = 1  # epochs between evaluations (the last epoch is always evaluated; it decides "best")
    deterministic: bool = False
    # --- how the run is executed: where it writes, on what, what it reports, how often it saves, and whether the
    # teacher's outputs are replayed from the cache (the very outputs the teacher gives; float16 rounds them)
    out: str | None = field(default=None, metadata=RUN)  # run folder; default runs/<name>
    name: str | None = field(default=None, metadata=RUN)
    device: str = field(default="auto", metadata=RUN)  # auto | cpu | cuda | cuda:N
    threads: int | None = field(default=None, metadata=RUN)  # CPU threads (torch.set_num_threads)
    tensorboard: bool = field(default=True, metadata=RUN)
    progress: bool = field(default=True, metadata=RUN)
    log_every: int = field(default=50, metadata=RUN)  # steps between host reads of the on-device metrics
    checkpoint_every: int = field(default=0, metadata=RUN)  # steps between mid-epoch checkpoints (0: epoch ends)
    teacher_cache: bool = field(default=False, metadata=RUN)  # record / replay the teacher's outputs per (seed, epoch, index)
    # float16 | float32 (float32: bit-identical to no cache)
    teacher_cache_dtype: str = field(default="float16", metadata=RUN)

    def __post_init__(self):
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.eval_every < 1 or self.log_every < 1 or self.checkpoint_every < 0:
            raise ConfigError("eval_every and log_every must be >= 1, checkpoint_every >= 0")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        for key in ("teacher_channels_last", "channels_last", "amp"):
            if getattr(self, key) not in (True, False, "auto"):
                raise ConfigError(f"{key} must be true, false or auto, got {getattr(self, key)!r}")
        if self.compile not in (True, False, "auto"):
            raise ConfigError(f"compile must be true, false or auto, got {self.compile!r}")
        if self.task not in ("classification", "detection"):
            raise ConfigError(f"task must be classification or detection, got {self.task!r}")
        if self.teacher_cache_dtype not in ("float16", "float32"):
            raise ConfigError(f"teacher_cache_dtype must be float16 or float32, got {self.teacher_cache_dtype!r}")

    @property
    def run_name(self) -> str:
        return self.name or f"{self.method}-{self.student}-{self.data.dataset}-s{self.seed}"

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.run_name


# --- dataclasses from plain dicts -------------------------------------------------------------------

def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(value: Any, tp, where: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping of keys, got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # `stage: 2` names a choice, not a count
            return str(value)
    elif tp is Any:
        return value
    raise ConfigError(f"{where} must be of type {_type_name(tp)}, got {value!r}")


def from_dict(cls, data: dict | None, where: str = "config"):
    """Build dataclass `cls` from `data`, rejecting unknown keys and values of the wrong type."""
    data = data or {}
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key {_join(where, key)!r}{hint}")
    kwargs = {k: _coerce(v, hints[k], _join(where, k)) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _join(where: str, key: str) -> str:
    return key if where in ("config", "") else f"{where}.{key}"


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


RUN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("section") == "run")
# Keys added after runs were recorded, with the values they had before they existed (compile's old false or its
# new auto): at those values they are left out of the trained settings, so that adding a key or changing its
# default never makes an earlier run of the same recipe look different
LATER_DEFAULTS = {"compile": (False, "auto"), "teacher_fold_bn": (True,), "teacher_channels_last": (False, "auto"),
                  "task": ("classification",), "detector": (dataclasses.asdict(DetectorConfig()),)}
# Keys recorded in earlier runs whose default changed since, {key: (new default, old default)}: the new default reads
# as the old one, so that the runs and teachers recorded before keep their identity (the layout changes rounding
# only, as compilation does; bf16 changes more, so the suites and sweeps pin amp=false and their rows stay float32
# on every machine: MEASURED_PRECISION)
CHANGED_DEFAULTS = {"channels_last": ("auto", False), "amp": ("auto", False)}
# The overrides the suites and sweeps start from: they compare methods in one arithmetic on every machine, float32,
# whatever `amp: auto` would pick for the hardware (a row may still ask for bf16, as the `-bf16` rows do: later
# overrides win)
MEASURED_PRECISION = ("amp=false",)


def _at_later_default(key: str, value) -> bool:
    return key in LATER_DEFAULTS and any(value is d or (type(value) is type(d) and value == d)
                                         for d in LATER_DEFAULTS[key])


def trained_settings(config: TrainConfig | dict) -> dict:
    """The config's first section, what is trained: every key but the run section's (RUN_KEYS), as plain data. A
    recorded config (a dict from config.json) is read with today's defaults for the keys it lacks."""
    if isinstance(config, dict):
        try:
            config = from_dict(TrainConfig, config)
        except ConfigError:  # a config from a kdforge that had other keys: compared as recorded
            pass
    values = to_dict(config) if not isinstance(config, dict) else config
    return {k: _as_recorded(k, v) for k, v in values.items() if k not in RUN_KEYS and not _at_later_default(k, v)}


def _as_recorded(key: str, value):
    new, old = CHANGED_DEFAULTS.get(key, (None, None))
    return old if new is not None and value == new else value


PATH_KEYS = ("teacher_checkpoint",)  # trained settings that name a file or folder


def settings_differences(recorded: dict, wanted: TrainConfig | dict) -> list[str]:
    """'key: recorded -> wanted' for each trained setting that differs (nested keys dotted), sorted."""
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            if k in PATH_KEYS and isinstance(v, str):  # 'teachers/t/' and 'teachers/t' name the same folder
                v = os.path.normpath(v)
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "method_args" else {prefix + k: v})
        return out

    a, b = flat(trained_settings(recorded)), flat(trained_settings(wanted))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


# --- YAML files, presets and overrides -------------------------------------------------------------

def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _load_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)  # safe_load: a config can never construct Python objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, not {type(data).__name__}")
    return data


RUN_CONFIG = "config.json"  # what a run folder records of its settings (kdforge.engine.run)


def resolve_source(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_dir():  # a run folder: the settings it was trained with
        if not (path / RUN_CONFIG).exists():
            raise ConfigError(f"{path} is a folder without a run's {RUN_CONFIG}; pass a config file, a preset or a "
                              "run folder")
        return path / RUN_CONFIG
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        return path
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if preset.exists():
        return preset
    close = difflib.get_close_matches(name_or_path, list_presets(), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(f"{name_or_path!r} is neither a config file nor a preset: {hint}run `kdforge list presets`")


def load_raw(name_or_path: str, _seen: tuple = ()) -> dict:
    """The YAML mapping of a file or preset, with its `base:` chain merged underneath; or the settings a run was
    trained with (a run folder or its config.json: a sweep or a new run around a finished one)."""
    path = resolve_source(name_or_path)
    if path.resolve() in _seen:
        raise ConfigError(f"config {path} inherits from itself through `base:`")
    data = _load_yaml(path)
    if path.name == RUN_CONFIG and isinstance(data.get("config"), dict) and "versions" in data:
        return data["config"]
    base = data.pop("base", None)
    if base is None:
        return data
    return deep_merge(_for_method(load_raw(str(base), _seen + (path.resolve(),)), data.get("method")), data)


def _for_method(data: dict, method) -> dict:
    """method_args belong to a method: a config that switches to another method does not inherit them
    (a KD pair preset's kd_weight means nothing to dkd)."""
    if method is None or method == data.get("method") or "method_args" not in data:
        return data
    return {k: v for k, v in data.items() if k != "method_args"}


def deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b=value` strings; values are parsed as YAML scalars/lists (`0.1`, `true`, `[1,2]`)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, _, raw = item.partition("=")
        if key.strip() == "method":
            data = _for_method(data, raw.strip())
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value (e.g. optim.lr=0.05)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = node[part]
        node[parts[-1]] = value
    return data


def load_config(name_or_path: str, overrides: list[str] = ()) -> TrainConfig:
    return from_dict(TrainConfig, apply_overrides(load_raw(name_or_path), list(overrides)))
