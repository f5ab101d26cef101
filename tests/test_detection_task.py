"""Detection on the trainer's task seam: tiny COCO-format splits built from real CIFAR-10 pixels, a teacher and
students trained end to end through `kdforge train`, COCO AP in the summary and in `kdforge eval`, every
detection method's terms, resume, and one-line errors."""

import json
from pathlib import Path

import pytest
import torch

from kdforge.config import load_config
from kdforge.errors import ConfigError

pytest.importorskip("pycocotools")
from kdforge.engine.pipeline import train  # noqa: E402

from conftest import run_cli, shared_data_dir  # noqa: E402

BASE = ["task=detection", "student=resnet8", "data.dataset=coco", "data.image_size=48", "data.batch_size=4",
        "data.eval_batch_size=8", "optim.lr=0.02", "threads=1", "progress=false", "tensorboard=false",
        "detector.proposals=40", "detector.rois_per_image=16", "detector.fpn_channels=16", "detector.box_head=32"]


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    from kdforge.data.detection_build import build_detection_data

    if shared_data_dir() is None:
        pytest.skip("cifar10-jpeg.tar.gz not found beside the repository (../shared/data)")
    out = tmp_path_factory.mktemp("det") / "coco"
    return build_detection_data(out, {"train": 8, "val": 4, "test": 4}, canvas=48, scale="12-24", seed=0,
                                echo=lambda m: None)


def config(root, out, *extra):
    return load_config("digits-teacher", [*BASE, f"data.root={root}", f"out={out}", *extra])


@pytest.fixture(scope="module")
def teacher_run(coco_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    return out, train(config(coco_root, out, "method=ce", "student=resnet14", "epochs=1"), echo=lambda m: None)


def test_a_detection_run_reports_coco_ap_and_eval_reproduces_it(coco_root, teacher_run):
    out, summary = teacher_run
    assert summary["task"] == "detection" and summary["compiled"] is False
    for key in ("ap_last", "ap50_last", "ap75_last", "ap_s_last", "ap_m_last", "ap_l_last", "ap_best"):
        assert 0.0 <= summary[key] <= 100.0
    assert summary["best_selected_on"] == "val" and summary["train_top1"] is None
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epoch = next(r for r in records if r["type"] == "epoch")
    # the detector's own four losses; train_top1 is the sampled RoIs' classification accuracy
    assert {"loss/classifier", "loss/box_reg", "loss/objectness", "loss/rpn_box_reg"} <= set(epoch)
    assert 0 <= epoch["train_top1"] <= 100
    assert {"test_ap", "test_ap50", "val_ap"} <= set(next(r for r in records if r["type"] == "eval"))
    result = run_cli("eval", str(out), "--dataset", "coco", "--data-root", str(coco_root), "--batch-size", "8")
    assert result.returncode == 0, result.stderr[-1500:]
    assert json.loads(result.stdout)["ap"] == pytest.approx(summary["ap_last"], abs=1e-3)


@pytest.mark.parametrize("method,terms", [
    ("kd", {"kd"}), ("dkd", {"dkd"}), ("ckd", {"ckd"}), ("reviewkd", {"reviewkd"}),
    ("reviewkd+dkd", {"reviewkd", "dkd"}), ("reviewkd+ckd", {"reviewkd", "ckd"})])
def test_every_detection_method_trains_with_its_terms(coco_root, teacher_run, tmp_path, method, terms):
    summary = train(config(coco_root, tmp_path / "s", f"method={method}", f"teacher_checkpoint={teacher_run[0]}",
                           "epochs=1", "detector.fpn_channels=8"), echo=lambda m: None)
    epoch = next(json.loads(line) for line in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()
                 if '"epoch"' in line and '"type": "epoch"' in line)
    assert {f"loss/{t}" for t in terms} <= set(epoch) and all(epoch[f"loss/{t}"] > 0 for t in terms)
    assert summary["teacher_top1"] == pytest.approx(teacher_run[1]["ap_last"], abs=1e-6)  # the teacher's AP


def test_the_reviewkd_term_is_hcl_of_the_fused_student_maps_against_the_teachers(coco_root):
    from kdforge.data.coco import CocoDetection
    from kdforge.detection.distill import REVIEWKD_WEIGHT, DetectionDistiller
    from kdforge.methods.reviewkd import hcl_loss
    from kdforge.models.detection import build_detector

    torch.manual_seed(0)
    student, teacher = build_detector("resnet8", 10, 48, fpn_channels=8), build_detector("resnet14", 10, 48)
    distiller = DetectionDistiller(teacher, student, "reviewkd").train()
    batch = next(CocoDetection(coco_root / "train.json", coco_root / "train" / "images").batches(2, train=True))
    out, _ = distiller(batch.images, batch.targets)
    record = distiller.taps.record
    with torch.no_grad():
        t_maps = list(teacher.backbone(record["images"].tensors).values())
        # the fusion written out: deepest level alone, each shallower one mixed with the upsampled result below
        predictions, residual = [], None
        for abf, x in zip(distiller.method.review.abfs, reversed(list(record["features"].values()))):
            prediction, residual = abf(x, residual)
            predictions.insert(0, prediction)
        expected = REVIEWKD_WEIGHT * hcl_loss(predictions, t_maps)
    torch.testing.assert_close(out.terms["reviewkd"].detach(), expected)
    out.loss.backward()
    assert all(p.grad is not None for p in distiller.method.review.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_a_detection_run_resumed_mid_epoch_ends_with_the_uninterrupted_weights(coco_root, tmp_path, monkeypatch):
    from kdforge.engine import trainer as T
    from kdforge.engine.checkpoint import read_checkpoint

    args = ["method=ce", "epochs=1", "checkpoint_every=1", "deterministic=true", "data.batch_size=2"]
    original, calls = T.Trainer._step, []

    def step_then_crash(self, *a):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash after two steps")
        return original(self, *a)

    monkeypatch.setattr(T.Trainer, "_step", step_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(config(coco_root, tmp_path / "cut", *args), echo=lambda m: None)
    monkeypatch.setattr(T.Trainer, "_step", original)
    assert read_checkpoint(tmp_path / "cut" / "checkpoint.pt")["progress"]["batch"] == 2
    train(config(coco_root, tmp_path / "cut", *args), resume=True, echo=lambda m: None)
    train(config(coco_root, tmp_path / "straight", *args), echo=lambda m: None)
    a = read_checkpoint(tmp_path / "cut" / "checkpoint.pt")["model"]
    b = read_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_detection_input_problems_are_one_line_errors(coco_root, teacher_run, tmp_path):
    with pytest.raises(ConfigError, match="takes temperature, weight; not beta"):
        train(config(coco_root, tmp_path / "a", "method=kd", f"teacher_checkpoint={teacher_run[0]}",
                     "method_args.beta=1.0"), echo=lambda m: None)
    with pytest.raises(ConfigError, match="data.dataset=coco"):
        train(config(coco_root, tmp_path / "b", "data.dataset=cifar10"), echo=lambda m: None)
    with pytest.raises(ConfigError, match="needs a teacher"):
        train(config(coco_root, tmp_path / "c", "method=dkd"), echo=lambda m: None)
    bad = run_cli("train", "digits-teacher", *BASE, f"data.root={coco_root}", "method=ckd", "teacher_checkpoint=",
                  f"out={tmp_path / 'd'}", "method=nope")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown detection method 'nope'" in bad.stderr
    assert not (tmp_path / "d" / "checkpoint.pt").exists()


COCO_PAIRS = {"coco-frcnn-r101-r18": "tv_resnet18", "coco-frcnn-r101-r50": "tv_resnet50",
              "coco-frcnn-r50-mv2": "tv_mobilenet_v2"}


@pytest.mark.parametrize("preset", ["coco-frcnn-r101-teacher", "coco-frcnn-r50-teacher", *COCO_PAIRS])
def test_coco_presets_hold_the_1x_recipe_of_the_papers_detection_code(preset):
    cfg = load_config(preset)
    # mdistiller detection configs on Detectron2's Base-RCNN-FPN: IMS_PER_BATCH 8, BASE_LR 0.01, 180k iterations
    # with steps at 120k / 160k (x 8 / 118,287 images = epochs 12, 8, 11), 1000 warm-up iterations, wd 1e-4
    assert (cfg.task, cfg.data.batch_size, cfg.optim.lr, cfg.epochs, cfg.optim.milestones) == ("detection", 8, 0.01, 12, [8, 11])
    assert cfg.optim.warmup_epochs == pytest.approx(1000 * 8 / 118287, abs=0.005) and cfg.optim.weight_decay == 1e-4
    d = cfg.detector
    assert (cfg.data.image_size, d.max_size, d.train_sizes[0], d.fpn_channels, d.rois_per_image, d.anchor_size) == \
        (800, 1333, 640, 256, 512, 32)
    if preset in COCO_PAIRS:
        assert cfg.student == COCO_PAIRS[preset] and cfg.method == "reviewkd+ckd"


@pytest.mark.slow
def test_coco_presets_run_two_steps_on_tiny_coco_files(coco_root, tmp_path):
    # the presets' backbones, FPN widths, head sizes and methods; the image side cut to the tiny files' 48 px
    small = [f"data.root={coco_root}", "data.image_size=48", "detector.max_size=48", "detector.train_sizes=[40,48]",
             "detector.anchor_size=8", "detector.proposals=30", "detector.rois_per_image=16", "epochs=1",
             "data.batch_size=4", "data.eval_batch_size=8", "amp=false", "threads=1", "progress=false",
             "tensorboard=false"]
    teachers = {}
    for name in ("coco-frcnn-r101-teacher", "coco-frcnn-r50-teacher"):
        teachers[name] = tmp_path / name
        summary = train(load_config(name, small + [f"out={teachers[name]}"]), echo=lambda m: None)
        assert summary["ap_last"] >= 0 and summary["student"] in ("tv_resnet101", "tv_resnet50")
    for preset in COCO_PAIRS:
        teacher = teachers["coco-frcnn-r50-teacher" if preset.endswith("mv2") else "coco-frcnn-r101-teacher"]
        summary = train(load_config(preset, small + [f"teacher_checkpoint={teacher}", f"out={tmp_path / preset}"]),
                        echo=lambda m: None)
        assert summary["method"] == "reviewkd+ckd" and summary["teacher"] in ("tv_resnet101", "tv_resnet50")


@pytest.mark.slow
def test_a_detection_method_trains_under_two_processes(coco_root, teacher_run, tmp_path):
    import os
    import subprocess
    import sys

    from kdforge.engine.checkpoint import read_checkpoint

    env = dict(os.environ, OMP_NUM_THREADS="1")
    # two gloo processes on the CPU, also where one GPU is present (device=auto would give each rank a GPU)
    args = [*BASE, f"data.root={coco_root}", "method=reviewkd+dkd", f"teacher_checkpoint={teacher_run[0]}", "epochs=1",
            f"out={tmp_path / 'ddp'}", "device=cpu"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                f"--log-dir={tmp_path / 'logs'}"]  # torchrun's own log folder: under the test's, not the system's
    run = subprocess.run([*launcher, "-m", "kdforge", "train", "digits-teacher", *args], capture_output=True, text=True,
                         timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["task"] == "detection" and summary["ap_last"] >= 0
    assert read_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["progress"]["step"] == 2  # 8 images / global batch 4


@pytest.mark.slow
def test_the_detection_suite_resumes_and_tabulates_ap_with_paired_intervals(tmp_path, monkeypatch):
    from kdforge.bench import detection

    if shared_data_dir() is None:
        pytest.skip("cifar10-jpeg.tar.gz not found beside the repository (../shared/data)")
    monkeypatch.setattr(detection, "DATA", {**detection.DATA, "train": 8, "val": 4, "test": 4, "canvas": 48,
                                            "scale": "12-24"})
    tiny = ("epochs=1", "data.batch_size=4", "data.eval_batch_size=8", "detector.proposals=30",
            "detector.rois_per_image=16", "detector.fpn_channels=16", "data.image_size=48")
    run = dict(seeds=2, methods=["ce", "kd"], root=tmp_path / "runs", results=tmp_path / "results",
               threads=1, echo=lambda m: None, overrides=tiny)
    table = detection.run_detection_suite(**{**run, "seeds": 0})  # the canvases and the teacher only
    assert "| ce |" not in table and "Teacher resnet20-FPN" in table
    assert detection.read_rows(tmp_path / "results" / "detection-cpu.csv") == []
    table = detection.run_detection_suite(only_seeds=[0], **run)
    assert "| ce | 1 |" in table and "| kd | 1 |" in table and "(n=1)" in table
    [stored] = list((tmp_path / "results" / "teachers").iterdir())  # kept for a new machine to restore
    assert (stored / "summary.json").exists() and (stored / "checkpoint.pt").exists()
    table = detection.run_detection_suite(**run)  # seed 0 is not trained again; seed 1 is added
    rows = detection.read_rows(tmp_path / "results" / "detection-cpu.csv")
    assert sorted((r["method"], r["seed"]) for r in rows) == [("ce", "0"), ("ce", "1"), ("kd", "0"), ("kd", "1")]
    assert "| kd | 2 |" in table and "[" in table.split("| kd | 2 |")[1]  # a paired interval from two seeds
    assert (tmp_path / "results" / "detection-cpu-curves.png").stat().st_size > 0 and "curves.png" in table
    # each run's curve is kept beside the table: a machine without the run folders still draws the figure
    import shutil

    assert len((tmp_path / "results" / "detection-cpu.curves.jsonl").read_text().splitlines()) == 4
    shutil.rmtree(tmp_path / "runs" / "detection-cpu")
    (tmp_path / "results" / "detection-cpu-curves.png").unlink()
    teacher = json.loads(next((tmp_path / "results" / "teachers").iterdir()).joinpath("summary.json").read_text())
    assert "curves.png" in detection.write_table(tmp_path / "results", teacher, tmp_path / "runs")
    assert (tmp_path / "results" / "detection-cpu-curves.png").stat().st_size > 0


def test_the_canvas_folder_and_the_teacher_are_named_after_the_builder_version(monkeypatch):
    from kdforge.bench import detection
    from kdforge.data import detection_build

    root = Path("runs-x")
    common = lambda: [f"data.root={detection.data_folder(root)}", "progress=false"]  # noqa: E731
    folder, teacher = detection.data_folder(root), detection.teacher_folder(root, common())
    assert f"builder{detection_build.BUILDER_VERSION}-" in folder.name
    monkeypatch.setattr(detection_build, "BUILDER_VERSION", detection_build.BUILDER_VERSION + 1)
    assert detection.data_folder(root) != folder and detection.teacher_folder(root, common()) != teacher
