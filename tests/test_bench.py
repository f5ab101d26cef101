"""Accuracy benchmarks: aggregation against hand computation, resume, smoke grids, published numbers, the
results page."""

import math
import statistics

import pytest

from kdforge.bench.accuracy import COLUMNS, append_row, read_rows, run_accuracy
from kdforge.bench.report import T975, compare, markdown_table, method_stats, paired_difference, published, read_csv
from kdforge.bench.results_page import write_results_page
from kdforge.bench.smoke import cells, run_smoke, validate
from kdforge.config import load_config


def hand_rows():
    table = {"ce": [70.0, 71.0, 72.5], "kd": [73.0, 73.5, 75.0], "ckd": [74.0, 73.0, 76.5]}
    return [{"method": m, "seed": str(s), "top1_last": str(v), "top1_best": str(v + 0.5), "epochs": "15",
             "wall_seconds": "1", "images_per_second": "1", "teacher_top1": "80"}
            for m, values in table.items() for s, v in enumerate(values)]


def test_aggregation_mean_std_and_paired_interval():
    rows = hand_rows()
    stats = {s.method: s for s in method_stats(rows)}
    assert stats["kd"].n == 3 and stats["kd"].last_mean == pytest.approx((73 + 73.5 + 75) / 3)
    mean = (73 + 73.5 + 75) / 3
    sd = math.sqrt(((73 - mean) ** 2 + (73.5 - mean) ** 2 + (75 - mean) ** 2) / 2)
    assert stats["kd"].last_std == pytest.approx(sd)
    assert stats["kd"].best_mean == pytest.approx(mean + 0.5)
    # ckd - kd per seed: +1.0, -0.5, +1.5 -> mean 0.6667, sd 1.0408, t(2) = 4.303
    d = paired_difference(rows, "ckd", "kd")
    diffs = [1.0, -0.5, 1.5]
    half = 4.303 * statistics.stdev(diffs) / math.sqrt(3)
    assert d.mean == pytest.approx(statistics.fmean(diffs))
    assert (d.low, d.high) == (pytest.approx(d.mean - half), pytest.approx(d.mean + half))
    assert paired_difference(rows, "kd", "kd") is None
    one = [r for r in rows if r["seed"] == "0"]
    assert paired_difference(one, "ckd", "ce").low is None  # a single seed has no interval


def test_results_csv_round_trip_and_foreign_files_refused(tmp_path):
    path = tmp_path / "s.csv"
    append_row(path, {"method": "kd", "seed": 0, "top1_last": 71.5, "top1_best": 72.0, "epochs": 3,
                      "wall_seconds": 2.0, "images_per_second": 100.0, "teacher_top1": None})
    rows = read_rows(path)
    assert rows[0]["method"] == "kd" and float(rows[0]["top1_last"]) == 71.5 and rows[0]["teacher_top1"] == ""
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    from kdforge.errors import UserError

    with pytest.raises(UserError):
        read_rows(tmp_path / "bad.csv")


def test_accuracy_suite_runs_then_resume_skips_finished_rows(tmp_path):
    args = dict(seeds=2, methods=["ce", "kd"], root=str(tmp_path / "runs"), results=str(tmp_path / "res"), threads=1)
    messages = []
    run_accuracy("digits", echo=messages.append, **args)
    rows = read_csv(tmp_path / "res" / "digits.csv")
    assert sorted((r["method"], r["seed"]) for r in rows) == [("ce", "0"), ("ce", "1"), ("kd", "0"), ("kd", "1")]
    assert (tmp_path / "res" / "digits.md").exists() and (tmp_path / "res" / "digits.png").exists()
    assert "last − kd" in (tmp_path / "res" / "digits.md").read_text()
    # a second call trains nothing; a third with one more seed trains exactly the two new runs
    messages.clear()
    run_accuracy("digits", echo=messages.append, **args)
    assert "0 runs to do" in messages[0]
    run_accuracy("digits", echo=messages.append, **{**args, "seeds": 3})
    assert len(read_csv(tmp_path / "res" / "digits.csv")) == 6
    assert len(list((tmp_path / "runs" / "teachers").iterdir())) == 1  # the teacher was trained once
    # every recorded run's curve is kept beside the table, and a machine without the run folders still plots it
    import json
    import shutil

    from kdforge.bench.accuracy import AccuracyBench
    from kdforge.bench.suites import SUITES

    kept = [json.loads(line) for line in (tmp_path / "res" / "digits.curves.jsonl").read_text().splitlines()]
    assert sorted((k["method"], k["seed"]) for k in kept) == sorted((m, s) for m in ("ce", "kd") for s in range(3))
    folder_evals = [json.loads(line) for line in (tmp_path / "runs" / "digits" / "kd-s0" / "metrics.jsonl")
                    .read_text().splitlines() if '"type": "eval"' in line]
    assert next(k["records"] for k in kept if (k["method"], k["seed"]) == ("kd", 0)) == folder_evals
    shutil.rmtree(tmp_path / "runs" / "digits")
    (tmp_path / "res" / "digits-curves.png").unlink()
    bench = AccuracyBench(SUITES.get("digits"), root=tmp_path / "runs", results=tmp_path / "res")
    bench.report()
    figure = (tmp_path / "res" / "digits-curves.png").read_bytes()
    # a row recorded before curves were kept, its folder gone: the figure of its time stays as it is, and the kept
    # curves get a figure of their own beside it
    append_row(tmp_path / "res" / "digits.csv", {"method": "fitnet", "seed": 0, "top1_last": 50.0, "top1_best": 50.0,
                                                 "epochs": 1, "wall_seconds": 1.0, "images_per_second": 1.0,
                                                 "teacher_top1": 90.0})
    bench.report()
    assert (tmp_path / "res" / "digits-curves.png").read_bytes() == figure
    assert (tmp_path / "res" / "digits-curves-kept.png").exists()
    assert "Curves: seed 0 of fitnet was recorded before" in (tmp_path / "res" / "digits.md").read_text()


def test_a_kept_curve_belongs_to_one_run_and_is_kept_once(tmp_path):
    from kdforge.bench.curves import keep_curve, recorded_curve

    evals = [{"type": "eval", "epoch": 1, "test_top1": 50.0}, {"type": "eval", "epoch": 2, "test_top1": 61.25}]
    keep_curve(tmp_path, "s", "kd", 0, 61.25, evals)
    keep_curve(tmp_path, "s", "kd", 0, "61.2500", evals)  # the same run read back from the CSV: not kept twice
    assert len((tmp_path / "s.curves.jsonl").read_text().splitlines()) == 1
    assert recorded_curve(tmp_path, "s", "kd", 0, "61.2500") == evals
    # a run trained again after its row was withdrawn ends elsewhere: the old curve is not its curve
    assert recorded_curve(tmp_path, "s", "kd", 0, 60.0) is None and recorded_curve(tmp_path, "s", "kd", 1, 61.25) is None


def test_unknown_suite_method_and_budget_are_clear_errors(tmp_path):
    from kdforge.errors import ConfigError

    with pytest.raises(ConfigError, match="has no method"):
        run_accuracy("digits", methods=["nope"], root=str(tmp_path), results=str(tmp_path))
    with pytest.raises(ConfigError, match="smoke"):
        run_accuracy("cifar100-grid", root=str(tmp_path), results=str(tmp_path))
    with pytest.raises(ConfigError, match="suite"):
        run_accuracy("cifar1000", root=str(tmp_path), results=str(tmp_path))


@pytest.mark.parametrize("suite", ["cifar100-grid", "imagenet"])
def test_smoke_grids_validate_every_cell(suite):
    grid = cells(suite)
    assert validate(suite) == []
    if suite == "cifar100-grid":
        pairs = {c[0] for c in grid}
        assert len(pairs) == 11 and len(grid) == 11 * len({c[1] for c in grid})
        assert {"ckd", "dkd", "ickd", "ickd_online", "ickd_tf", "kr", "rkd", "at", "fitnet"} <= {c[1] for c in grid}
        assert {"dist", "kd+logitstd", "dkd+logitstd", "nst", "sp", "pkt", "vid", "kdsvd"} <= {c[1] for c in grid}
    else:  # kd, ckd, dkd, dist on both pairs; KD + LogitStd where its README gives the command (r34 -> r18)
        assert len(grid) == 9 and {"dist", "kd+logitstd"} <= {c[1] for c in grid}


def test_smoke_cell_runs_two_steps_on_tiny_real_format_data(tmp_path):
    path = run_smoke("cifar100-grid", tmp_path, threads=1, only=["resnet56-resnet20"], echo=lambda m: None)
    rows = read_csv(tmp_path / "cifar100-grid-smoke.csv")
    assert rows and all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    assert "cells ran" in path.read_text()


def test_switching_method_drops_the_presets_method_args():
    assert load_config("cifar100-resnet56-resnet20", ["method=dkd"]).method_args == {}
    kept = load_config("cifar100-resnet56-resnet20", ["method_args.temperature=2", "method=kd"]).method_args
    assert kept["temperature"] == 2 and kept["kd_weight"] == 0.9
    assert "kd_weight" not in load_config("cifar100-dkd-resnet56-resnet20").method_args


def test_published_numbers_and_compare_label_protocols(tmp_path):
    refs = published()
    row = next(r for r in refs if r["cell"] == "resnet32x4->resnet8x4" and r["method"] == "dkd")
    assert float(row["top1"]) == 76.32 and row["protocol"].startswith("best epoch")
    assert len([r for r in refs if r["suite"] == "cifar100-grid"]) == 55 + 24  # + LogitStd (KD, DKD) and DIST
    text = compare("cifar100-grid", tmp_path)
    assert "last epoch" in text and "best epoch" in text
    assert "no published numbers" in compare("digits", tmp_path)


def test_results_page_is_generated_from_files(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    for row in hand_rows():
        append_row(res / "fmnist-cpu.csv", row)
    page = write_results_page(res, tmp_path / "docs" / "RESULTS.md").read_text()
    assert "## fmnist-cpu" in page and "| kd | 3 | 15 | 73.83 ± 1.04" in page
    assert "Not measured here" in page and "JPEG" in page
    assert "Not measured yet: `kdforge bench accuracy cifar10-cpu`" in page
    assert "## Speed and scale" not in page  # no speed files, no section


def test_results_page_speed_section_reads_the_bench_files(tmp_path):
    import json

    res = tmp_path / "results"
    res.mkdir()
    (res / "vs_torchdistill.json").write_text(json.dumps({
        "setting": {"images": 500, "pair": "resnet56 -> resnet20", "batch": 64, "threads": 2, "torchdistill": "1.1.5"},
        "median_seconds": {"torchdistill": 40.0, "kdforge_cold": 30.0, "kdforge_warm": 10.0},
        "kdforge_cold_over_torchdistill": 0.75, "kdforge_warm_over_torchdistill": 0.25}))
    (res / "step_overhead_warm.json").write_text(json.dumps({
        "setting": {"teacher": "resnet56", "student": "resnet20", "batch_size": 64, "steps": 9, "threads": 1,
                    "warm_cache": True},
        "ratio_to_baseline": {"baseline": 1.0, "kd": 1.04}}))
    page = write_results_page(res, tmp_path / "RESULTS.md").read_text()
    assert "torchdistill 40.0 s; kdforge 30.0 s cold (0.75×), 10.0 s with a warm teacher cache (0.25×); " \
           "cold / warm 3.00×" in page
    assert "| kd 1.040× | `bench/step_overhead.py --warm-cache` |" in page
    assert "float32" not in page.split("torchdistill 40.0 s")[1].split("\n")[0]  # a file from before amp=auto
    vs = json.loads((res / "vs_torchdistill.json").read_text())
    vs["median_seconds"].update(kdforge_cold_fp32=36.0, kdforge_warm_fp32=16.0)
    vs.update(kdforge_precision={"kdforge_cold": "amp=auto: the CPU has AMX-BF16 tiles"},
              kdforge_cold_fp32_over_torchdistill=0.9, kdforge_warm_fp32_over_torchdistill=0.4)
    (res / "vs_torchdistill.json").write_text(json.dumps(vs))
    page = write_results_page(res, tmp_path / "RESULTS.md").read_text()
    assert "cold / warm 3.00×; kdforge's defaults chose amp=auto: the CPU has AMX-BF16 tiles; in float32 (amp=false) " \
           "36.0 s cold (0.90×), 16.0 s warm (0.40×)" in page
    rates = {k: {"train_images_per_second_last_epoch": v} for k, v in
             (("ce", 20000.0), ("kd_cold_cache", 10000.0), ("kd_warm_cache", 18000.0))}
    (res / "gpu_check.json").write_text(json.dumps({
        "device": {"name": "NVIDIA H200", "torch": "2.11.0"}, "throughput": rates,
        "tests": {"rc": 1, "seconds": 200.0, "failed": ["FAILED tests/x.py::t"]}, "torchrun_nccl": {"rc": 0}}))
    page = write_results_page(res, tmp_path / "RESULTS.md").read_text()
    assert "ce 20,000 images/s; kd cold cache 10,000, warm 18,000; test suite there: 1 failed (200 s)" in page
    # a later check records pytest's tally, which the page shows as it is
    check = json.loads((res / "gpu_check.json").read_text())
    check["tests"]["counts"] = {"failed": 1, "passed": 600}
    (res / "gpu_check.json").write_text(json.dumps(check))
    (res / "student_layout_speed.json").write_text(json.dumps({"batch": 64, "threads": 2, "models": {
        "resnet8": {"eager": {"channels_last_speed": 1.24}, "compiled": {"channels_last_speed": 0.99}},
        "vgg8": {"eager": {"channels_last_speed": 1.09}}}}))
    page = write_results_page(res, tmp_path / "RESULTS.md").read_text()
    assert "| eager: resnet8 1.24×, vgg8 1.09×; compiled: resnet8 0.99× | `bench/student_layout_speed.py --compiled` |" \
        in page
    assert "test suite there: 1 failed, 600 passed (200 s)" in page


def test_gkd_suite_rows_pair_each_student_with_its_teachers_classes():
    from kdforge.bench.suites import SUITES

    rows = {v.name: v for v in SUITES.get("cifar10-gkd-cpu").variants([])}
    assert {"same/kd", "overlap/refilled", "disjoint/refilled", "incremental/refilled", "fewshot/ce",
            "overlap/refilled-spec", "disjoint/refilled-spec"} <= set(rows)
    # the CPU suites' validation-chosen stage 2 on `refilled`, the spec's defaults on `refilled-spec`
    assert "method_args.stage2_weight=10" in rows["overlap/refilled"].overrides
    spec_args = [o for o in rows["overlap/refilled-spec"].overrides if o.startswith("method_args")]
    assert spec_args == ["method_args.budget=equal"]  # the spec's loss settings; the suite's equal budget
    assert "method_args.budget=equal" in rows["overlap/refilled"].overrides
    assert not any(name.endswith("/kd") and name != "same/kd" for name in rows)  # KD needs the same classes
    overlap = rows["overlap/refilled"]
    assert overlap.teacher == ("data.classes=[0,1,2,3,4,5]",)
    assert "data.classes=[4,5,6,7,8,9]" in overlap.overrides and "data.val_per_class=200" in overlap.overrides
    assert rows["incremental/rkd"].teacher == ("data.classes=[0,1,2,3,4]",)
    assert not any(o.startswith("data.classes") for o in rows["incremental/rkd"].overrides)


def test_a_resumed_run_says_its_training_time_in_all_beside_this_sittings():
    from kdforge.bench.accuracy import took

    assert took(130.4, 121.0) == "130 s"  # one sitting: set-up and evaluation make it longer than the training
    assert took(600.2, 3211.6) == "600 s this sitting, 3212 s of training in all"


def test_a_killed_staged_run_is_found_for_resume(tmp_path):
    from kdforge.bench.accuracy import has_checkpoint

    run = tmp_path / "refilled-s0"
    assert not has_checkpoint(run)  # nothing there yet
    (run / "stage1").mkdir(parents=True)
    (run / "stage1" / "metrics.jsonl").write_text("")
    assert not has_checkpoint(run)  # a stage folder without a checkpoint is not a run to resume
    (run / "stage1" / "checkpoint.prev.pt").write_bytes(b"x")
    assert has_checkpoint(run)
    plain = tmp_path / "kd-s0"
    plain.mkdir()
    (plain / "checkpoint.pt").write_bytes(b"x")
    assert has_checkpoint(plain)


def test_table_compares_within_each_cell_and_says_where_kd_has_no_meaning():
    from kdforge.bench.report import markdown_table

    rows = [{"method": m, "seed": str(s), "top1_last": str(v), "top1_best": str(v)}
            for m, vals in {"same/ce": (70, 72), "same/kd": (74, 75), "same/x": (73, 73),
                            "overlap/ce": (80, 81), "overlap/x": (78, 80)}.items() for s, v in enumerate(vals)]
    table = {line.split(" | ")[0].strip("| "): line for line in markdown_table(rows, {"overlap"})[2:]}
    # same/x - same/kd per seed: -1, -2 -> mean -1.5; same/x - same/ce: +3, +1 -> +2.0
    assert "| -1.50 [" in table["same/x"] and "| +2.00 [" in table["same/x"]
    # overlap/x - overlap/ce: -2, -1 -> -1.5; no kd in a cell whose teacher has other classes
    assert "no meaning (teacher's classes differ) | -1.50 [" in table["overlap/x"]
    assert list(table)[:3] == ["same/kd", "same/x", "same/ce"]  # a cell's rows together, best first
    # a cell without a ce row (incremental) compares with the ce of the cell the suite names (same/ce)
    rows += [{"method": "incremental/x", "seed": str(s), "top1_last": str(v), "top1_best": str(v)}
             for s, v in enumerate((69, 74))]
    lines = markdown_table(rows, {"overlap", "incremental"}, {"incremental": "same"})
    table = {line.split(" | ")[0].strip("| "): line for line in lines[2:]}
    assert "no meaning (teacher's classes differ) | +0.50 [" in table["incremental/x"]  # -1, +2
    assert any("`incremental` compare with `same/ce`" in line for line in lines)
    from kdforge.bench.suites import SUITES

    assert SUITES.get("cifar10-gkd-cpu").ce_cells == {"incremental": "same"}


def test_a_row_another_process_recorded_meanwhile_is_not_written_twice(tmp_path, monkeypatch):
    from kdforge.bench import accuracy

    args = dict(seeds=1, methods=["ce"], root=str(tmp_path / "runs"), results=str(tmp_path / "res"), threads=1)
    real = accuracy.AccuracyBench._student

    def racing(self, variant, seed, teacher):  # a second lane finishes and records the same run meanwhile
        summary = real(self, variant, seed, teacher)
        accuracy.append_row(self.csv, {"method": variant.name, "seed": seed, "top1_last": summary["top1_last"],
                                       "top1_best": summary["top1_best"], "epochs": summary["epochs"],
                                       "wall_seconds": 0, "images_per_second": 0, "teacher_top1": 0})
        return summary

    monkeypatch.setattr(accuracy.AccuracyBench, "_student", racing)
    run_accuracy("digits", echo=lambda m: None, **args)
    assert [(r["method"], r["seed"]) for r in read_csv(tmp_path / "res" / "digits.csv")] == [("ce", "0")]


def test_adopt_copies_only_the_rows_that_train_exactly_the_same(tmp_path):
    from kdforge.bench.adopt import adopt_rows

    for method, seed in (("ce", 0), ("ce", 1), ("refilled", 0), ("fitnet", 0)):
        append_row(tmp_path / "cifar10-cpu.csv", {"method": method, "seed": seed, "top1_last": 70.0 + seed,
                                                  "top1_best": 71.0, "epochs": 15, "wall_seconds": 1.0,
                                                  "images_per_second": 1.0, "teacher_top1": 80.0})
    append_row(tmp_path / "cifar10-gkd-cpu.csv", {"method": "same/ce", "seed": 0, "top1_last": 69.0, "top1_best": 69.0,
                                                  "epochs": 15, "wall_seconds": 1.0, "images_per_second": 1.0,
                                                  "teacher_top1": 80.0})
    adopted = adopt_rows("cifar10-cpu", "cifar10-gkd-cpu", tmp_path, echo=lambda m: None)
    assert adopted == ["same/ce", "same/refilled"]  # overlap/ce, disjoint/ce: other classes, never matched
    rows = read_rows(tmp_path / "cifar10-gkd-cpu.csv")
    assert [(r["method"], r["seed"], r["top1_last"]) for r in rows] == [
        ("same/ce", "0", "69.0000"), ("same/ce", "1", "71.0000"), ("same/refilled", "0", "70.0000")]
    assert adopt_rows("cifar10-cpu", "cifar10-gkd-cpu", tmp_path, echo=lambda m: None) == []  # nothing twice


def test_adopt_at_a_paper_budget_takes_the_paper_suites_resnet8_rows_into_the_capacity_suite(tmp_path):
    from kdforge.bench.adopt import adopt_rows

    for method in ("ce", "kd", "kr", "kr_kd", "ckd"):
        append_row(tmp_path / "cifar10-paper-cpu-e240.csv", {"method": method, "seed": 0, "top1_last": 70.0,
                                                             "top1_best": 71.0, "epochs": 240})
    adopted = adopt_rows("cifar10-paper-cpu", "cifar10-paper-kr-cpu", tmp_path, echo=lambda m: None, budget="e240")
    # the suite's own student is resnet8; resnet14 and resnet8x0.5 train other students
    assert adopted == ["resnet8/ce", "resnet8/kd", "resnet8/kr", "resnet8/kr_kd"]
    assert {r["method"] for r in read_rows(tmp_path / "cifar10-paper-kr-cpu-e240.csv")} == set(adopted)


def test_before_after_pairs_each_file_with_its_own_ce(tmp_path):
    from kdforge.bench.report import before_after

    before, after = tmp_path / "before", tmp_path / "after"
    for folder, gain in ((before, 1.0), (after, 2.0)):
        folder.mkdir()
        for seed, ce in enumerate((70.0, 71.0, 72.5)):
            for method, value in (("ce", ce), ("crd", ce + gain + 0.1 * seed)):
                append_row(folder / "cifar10-cpu.csv", {"method": method, "seed": seed, "top1_last": value,
                                                        "top1_best": value, "epochs": 15, "wall_seconds": 1.0,
                                                        "images_per_second": 1.0, "teacher_top1": 80.0})
    (line,) = [x for x in before_after(["cifar10-cpu"], before, after, ["crd"]).splitlines() if "| crd |" in x]
    half = T975[2] * statistics.stdev([0.0, 0.1, 0.2]) / math.sqrt(3)
    assert f"+1.10 [{1.1 - half:+.2f}, {1.1 + half:+.2f}]" in line and f"+2.10 [{2.1 - half:+.2f}" in line
    assert "(3, 15)" in line


def test_a_results_file_from_before_a_new_column_gains_it_without_losing_rows(tmp_path):
    from kdforge.bench.accuracy import REQUIRED

    path = tmp_path / "old.csv"
    path.write_text(",".join(REQUIRED) + "\nce,0,70.0000,70.5000,15,1.0,2.0,80.0000\n")
    append_row(path, {"method": "kd", "seed": 0, "top1_last": 71.0, "top1_best": 71.5, "epochs": 15,
                      "wall_seconds": 1.0, "images_per_second": 2.0, "teacher_top1": 80.0, "train_top1": 88.25})
    rows = read_rows(path)
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert [(r["method"], r["top1_last"], r["train_top1"]) for r in rows] == [("ce", "70.0000", ""),
                                                                            ("kd", "71.0000", "88.2500")]
    assert "| 88.25 |" in "\n".join(markdown_table(rows))


def test_rows_from_before_the_validation_column_read_it_from_their_runs_without_touching_the_csv(tmp_path):
    import json

    from kdforge.bench.accuracy import REQUIRED, with_summary_values

    path = tmp_path / "old.csv"
    path.write_text(",".join(REQUIRED) + "\nce,0,70.0000,70.5000,15,1.0,2.0,80.0000\nkd,0,71.0,71.0,15,1.0,2.0,80.0\n")
    before = path.read_text()
    (tmp_path / "runs" / "ce-s0").mkdir(parents=True)
    (tmp_path / "runs" / "ce-s0" / "summary.json").write_text(json.dumps({"val_top1_last": 68.4}))
    rows = with_summary_values(read_rows(path), tmp_path / "runs", "val_top1", "val_top1_last")
    assert [r.get("val_top1") for r in rows] == ["68.4000", None]  # kd-s0 has no run folder: left empty
    assert path.read_text() == before


def test_regime_chooses_the_shortest_converged_affordable_schedule_where_kd_helps(tmp_path):
    from kdforge.bench.regime import assess, write_regime

    def runs(budget, ce, kd, wall=600.0, threads=2):
        for seed, (c, k) in enumerate(zip(ce, kd)):
            for method, value in (("ce", c), ("kd", k)):
                append_row(tmp_path / f"cifar10-paper-cpu-{budget}.csv", {
                    "method": method, "seed": seed, "top1_last": value, "top1_best": value, "epochs": 1,
                    "wall_seconds": wall, "images_per_second": 1.0, "teacher_top1": 80.0, "train_top1": 90.0,
                    "threads": threads, "val_top1": value - 1.0})  # validation: one point below test

    runs("e30", [60.0, 61.0, 60.5], [62.0, 63.0, 62.4])  # not converged: e60's ce is 4 points higher
    runs("e60", [64.0, 65.0, 64.6], [66.0, 67.2, 66.5])  # converged (e120 within 0.5), kd helps
    runs("e120", [64.3, 65.2, 64.8], [64.2, 65.5, 64.6], wall=1500.0)  # too slow anyway
    records, chosen = assess("cifar10-paper-cpu", tmp_path)
    by = {r["budget"]: r for r in records}
    assert by["e30"]["converged"] is False and by["e60"]["converged"] is True and by["e60"]["kd_helps"] is True
    assert by["e120"]["converged"] is None and by["e120"]["affordable"] is False  # no e240 runs: not measured
    assert chosen == "e60"
    # decided on the validation column by default; the test split is reported beside
    assert by["e60"]["split"] == "val" and by["e60"]["ce"] == pytest.approx((64.0 + 65.0 + 64.6) / 3 - 1.0)
    assert by["e60"]["by_split"]["test"]["ce"] == pytest.approx((64.0 + 65.0 + 64.6) / 3)
    assert assess("cifar10-paper-cpu", tmp_path, split="test")[0][1]["ce"] == pytest.approx((64.0 + 65.0 + 64.6) / 3)
    page = write_regime("cifar10-paper-cpu", tmp_path).read_text()
    assert "Chosen: **e60**" in page and "read on the **validation split**" in page and "the test split (shown" in page
    # runs in 1-thread lanes beside another job do not decide affordability: without a 2-thread run it is unmeasured
    for path in tmp_path.glob("*.csv"):
        path.unlink()
    runs("e30", [60.0, 61.0, 60.5], [62.0, 63.0, 62.4], threads=1)
    runs("e60", [64.0, 65.0, 64.6], [66.0, 67.2, 66.5], threads=1)
    records, chosen = assess("cifar10-paper-cpu", tmp_path)
    assert records[1]["affordable"] is None and records[1]["slowest_lane_minutes"] == 10.0 and chosen is None
    # a kd run that computed its teacher outputs (the seed's first) is shown, not deciding; a warm one decides
    for path in tmp_path.glob("*.csv"):
        path.unlink()
    runs("e30", [60.0, 61.0, 60.5], [62.0, 63.0, 62.4])
    runs("e60", [64.0, 65.0, 64.6], [66.0, 67.2, 66.5])
    append_row(tmp_path / "cifar10-paper-cpu-e60.csv", {
        "method": "kd", "seed": 3, "top1_last": 66.0, "top1_best": 66.0, "epochs": 1, "wall_seconds": 1800.0,
        "images_per_second": 1.0, "teacher_top1": 80.0, "threads": 2, "teacher_epochs_computed": 60,
        "val_top1": 65.0})
    append_row(tmp_path / "cifar10-paper-cpu-e60.csv", {
        "method": "kd", "seed": 4, "top1_last": 66.0, "top1_best": 66.0, "epochs": 1, "wall_seconds": 900.0,
        "images_per_second": 1.0, "teacher_top1": 80.0, "threads": 2, "teacher_epochs_computed": 0,
        "val_top1": 65.0})
    e60 = assess("cifar10-paper-cpu", tmp_path)[0][1]
    assert (e60["cold_kd_minutes"], e60["slowest_minutes"], e60["affordable"]) == (30.0, 15.0, True)


def test_only_seeds_restricts_a_sitting_to_its_share_of_the_seeds(tmp_path):
    lines = []
    run_accuracy("digits", seeds=3, methods=["ce"], root=str(tmp_path / "runs"), results=str(tmp_path / "res"),
                 threads=1, echo=lines.append, only_seeds=[1])
    assert [int(r["seed"]) for r in read_rows(tmp_path / "res" / "digits.csv")] == [1]
    assert "1 runs to do" in lines[0]


def test_a_teacher_free_row_neither_trains_nor_waits_for_the_teacher(tmp_path):
    args = dict(root=str(tmp_path / "runs"), results=str(tmp_path / "res"), threads=1, echo=lambda m: None)
    run_accuracy("digits", seeds=1, methods=["ce"], **args)
    assert not (tmp_path / "runs" / "teachers").exists()
    assert read_rows(tmp_path / "res" / "digits.csv")[0]["teacher_top1"] == ""
    run_accuracy("digits", seeds=1, methods=["kd"], **args)
    assert len(list((tmp_path / "runs" / "teachers").iterdir())) == 1
    run_accuracy("digits", seeds=2, methods=["ce"], **args)  # once it exists, a ce row names it
    rows = {r["seed"]: r for r in read_rows(tmp_path / "res" / "digits.csv") if r["method"] == "ce"}
    assert rows["1"]["teacher_top1"] != "" and rows["0"]["teacher_top1"] == ""


def test_a_lane_waits_for_the_teacher_another_lane_is_training_then_distils_from_it(tmp_path):
    import fcntl
    import threading

    from kdforge.bench.accuracy import AccuracyBench
    from kdforge.bench.suites import SUITES

    args = dict(root=str(tmp_path / "runs"), results=str(tmp_path / "res"), threads=1)
    first = AccuracyBench(SUITES.get("digits"), "small", tmp_path / "runs", tmp_path / "res", 1, lambda m: None)
    cfg, folder = first.teacher_config()
    (tmp_path / "runs" / ".locks").mkdir(parents=True)
    holder = open(tmp_path / "runs" / ".locks" / f"{folder.name}.lock", "a")  # the first lane holds the teacher's lock
    fcntl.flock(holder, fcntl.LOCK_EX)
    lines = []
    second = threading.Thread(target=run_accuracy, args=("digits",),
                              kwargs=dict(seeds=1, methods=["kd"], echo=lines.append, **args))
    second.start()
    second.join(timeout=5)
    assert second.is_alive() and not (folder / "summary.json").exists()  # it waits: trains nothing, fails nothing
    assert any("waiting for the teacher another run is training" in line for line in lines)
    first._train(cfg, folder, "teacher")  # the first lane trains the teacher under its lock, then lets go
    stamp = (folder / "summary.json").stat().st_mtime_ns
    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    second.join(timeout=120)
    assert not second.is_alive()
    assert (folder / "summary.json").stat().st_mtime_ns == stamp  # the waiting lane did not train it again
    (row,) = read_rows(tmp_path / "res" / "digits.csv")
    assert row["method"] == "kd" and row["teacher_top1"] != ""
    with open(tmp_path / "runs" / ".locks" / f"{folder.name}.lock", "a") as holder:  # held while it is finished:
        fcntl.flock(holder, fcntl.LOCK_EX)  # a lane distilling from the finished teacher neither waits nor says so
        lines.clear()
        third = threading.Thread(target=run_accuracy, args=("digits",),
                                 kwargs=dict(seeds=2, methods=["kd"], echo=lines.append, **args))
        third.start()
        third.join(timeout=120)
        assert not third.is_alive() and not any("waiting" in line for line in lines)
    assert [r["seed"] for r in read_rows(tmp_path / "res" / "digits.csv")] == ["0", "1"]


def test_compile_auto_keeps_the_cache_keys_and_finished_runs_of_compile_false():
    from kdforge.bench.accuracy import config_key
    from kdforge.config import to_dict, trained_settings

    old, new, forced = (load_config("cifar10-cpu-teacher", [f"compile={v}"]) for v in ("false", "auto", "true"))
    assert config_key(old, "d") == config_key(new, "d") != config_key(forced, "d")
    assert trained_settings(to_dict(old)) == trained_settings(to_dict(new)) != trained_settings(to_dict(forced))


def test_channels_last_auto_keeps_the_keys_and_recorded_settings_of_channels_last_false():
    from kdforge.bench.accuracy import config_key
    from kdforge.config import to_dict, trained_settings

    old, new, forced = (load_config("cifar10-cpu-teacher", [f"channels_last={v}"]) for v in ("false", "auto", "true"))
    assert config_key(old, "d") == config_key(new, "d") != config_key(forced, "d")
    recorded = to_dict(old)  # what a run before the default changed wrote in its config.json
    assert trained_settings(recorded)["channels_last"] is False and trained_settings(new) == trained_settings(recorded)
    assert trained_settings(to_dict(forced))["channels_last"] is True


def test_amp_auto_keeps_the_recorded_identity_and_suites_and_sweeps_stay_float32(tmp_path):
    from kdforge.bench.accuracy import AccuracyBench, config_key
    from kdforge.bench.suites import SUITES
    from kdforge.config import to_dict, trained_settings

    old, new, forced = (load_config("cifar10-cpu-teacher", [f"amp={v}"]) for v in ("false", "auto", "true"))
    assert new.amp == "auto" and config_key(old, "d") == config_key(new, "d") != config_key(forced, "d")
    assert trained_settings(to_dict(old)) == trained_settings(new)
    # a suite trains float32 whatever the machine would pick, teacher and students alike; its bf16 rows still ask
    bench = AccuracyBench(SUITES.get("cifar10-paper-cpu"), budget="e240", root=tmp_path, results=tmp_path)
    rows = {v.name: v for v in bench.variants(None)}
    assert bench.teacher_config()[0].amp is False
    assert bench.student_config(rows["kd"], 0, tmp_path / "t")[0].amp is False
    assert bench.student_config(rows["kd-bf16"], 0, tmp_path / "t")[0].amp is True


def test_suites_replay_the_teacher_from_its_output_cache_by_default(tmp_path):
    from pathlib import Path

    from kdforge.bench.accuracy import AccuracyBench, config_key
    from kdforge.bench.suites import SUITES

    bench = AccuracyBench(SUITES.get("cifar10-cpu"), root=tmp_path, results=tmp_path)
    rows = {v.name: v for v in bench.variants(["ce", "kd", "crd"])}
    kd = bench.student_config(rows["kd"], 0, Path("t"))[0]
    assert kd.teacher_cache and kd.teacher_cache_dtype == "float32"  # exact: cached rows train as uncached ones
    assert bench.student_config(rows["crd"], 0, Path("t"))[0].teacher_cache
    assert not bench.student_config(rows["ce"], 0, Path("t"))[0].teacher_cache
    teacher = load_config("cifar10-cpu-teacher")
    assert config_key(teacher, "d") == config_key(load_config("cifar10-cpu-teacher", ["teacher_cache=true"]), "d")


def test_results_page_leads_with_the_paper_regime_and_its_schedules(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    for row in hand_rows():
        append_row(res / "cifar10-paper-cpu-e60.csv", row)
        append_row(res / "cifar10-cpu.csv", row)
        if row["method"] in ("ce", "kd"):  # a shorter schedule with the selection's runs only
            append_row(res / "cifar10-paper-cpu-e30.csv", row)
    (res / "cifar10-paper-cpu-regime.md").write_text("# title\n\n| budget | ce |\n|---|---|\n| e60 | 71.17 |\n")
    page = write_results_page(res, tmp_path / "docs" / "RESULTS.md").read_text()
    assert page.index("## cifar10-paper-cpu") < page.index("## cifar10-cpu\n") < page.index("## fmnist-cpu")
    paper = page[page.index("## cifar10-paper-cpu"):page.index("## cifar10-cpu\n")]
    assert "| e60 | 71.17 |" in paper and "### 60-epoch schedule" in paper and "| kd | 3 | 15 | 73.83 ± 1.04" in paper
    assert "--budget e60" in paper and "120-epoch" not in paper  # only schedules with runs are shown
    # the schedule where seed methods ran, and their verdicts, lead the shorter one holding only ce and kd
    assert paper.index("### 60-epoch schedule") < paper.index("### 30-epoch schedule")
    assert "no seed method has run" in paper.split("### 30-epoch schedule")[1]
    # the answer first: each seed-method row against its claim's own comparator, and the claims not measured yet
    glance = page[page.index("## The seed methods' claims at a glance"):page.index("## cifar10-paper-cpu")]
    # ckd - kd per seed: +1.0, -0.5, +1.5: mean +0.67, half-width 4.303 * 1.0408 / sqrt(3) = 2.586
    # the list opens with the teacher (80 % in every hand row) against its kd student (73.83 %)
    assert ("- [cifar10-paper-cpu](#cifar10-paper-cpu), 60 epochs:\n  - the teacher of `kd`: 80.00 % test top-1, "
            "6.17 points above its `kd` student (73.83 %, n=3)\n  - `ckd` ties `kd`: +0.67 [-1.92, +3.25] (n=3)") \
        in glance
    assert "`ce`" not in glance.split("60 epochs:")[1].split("not measured")[0]  # kd is ckd's comparator, not ce
    assert "  - `ickd`: not measured yet" in glance and "30 epochs" not in glance


def test_results_page_shows_the_detection_suite_and_ckds_verdicts_on_box_ap(tmp_path):
    from kdforge.bench import detection

    res = tmp_path / "results"
    res.mkdir()
    aps = {"ce": (20.0, 21.0, 22.0), "kd": (21.0, 22.5, 23.0), "ckd": (22.0, 23.5, 24.5)}
    row = lambda method, seed, ap: {**dict.fromkeys(detection.COLUMNS, 12), "method": method, "seed": seed,  # noqa: E731
                                    "ap_last": ap, "ap50_last": ap, "ap75_last": ap}
    lines = [",".join(detection.COLUMNS)] + [",".join(str(row(m, seed, ap)[c]) for c in detection.COLUMNS)
                                             for m, values in aps.items() for seed, ap in enumerate(values)]
    (res / "detection-cpu.csv").write_text("\n".join(lines) + "\n")
    detection.write_table(res, {"ap_last": 30.0, "ap50_last": 50.0})
    assert not write_results_page(res, tmp_path / "docs" / "RESULTS.md").read_text().count("[detection-cpu.md]")
    page = (tmp_path / "docs" / "RESULTS.md").read_text()
    section = page[page.index("## detection-cpu"):]
    assert section.startswith("## detection-cpu\n\nGenerated by")  # one blank line under the heading
    assert "| ckd | 3 | 23.33 ± 1.26 |" in section
    # ckd - kd per seed: +1.0, +1.0, +1.5 -> mean +1.17, its interval above zero; ckd - ce: +2.0, +2.5, +2.5
    assert "- `ckd` **beats** `kd`: +1.17 [+0.45, +1.88] (n=3)" in section
    assert "- `ckd` **beats** `ce`: +2.33" in section and "`ckd` vs `dkd`" not in section  # no dkd row yet


def test_paper_suite_scales_warmups_to_the_schedule_and_labels_paper_budget_rows(tmp_path):
    from pathlib import Path

    from kdforge.bench.accuracy import AccuracyBench
    from kdforge.bench.suites import SUITES

    def config(budget, row):
        bench = AccuracyBench(SUITES.get("cifar10-paper-cpu"), budget=budget, root=tmp_path, results=tmp_path)
        return bench.student_config({v.name: v for v in bench.variants(None)}[row], 0, Path("t"))[0]

    assert config("e120", "dkd").method_args["warmup_epochs"] == 10  # 20 of 240 epochs
    assert config("e60", "dkd").method_args["warmup_epochs"] == 5 and config("e60", "dkd").method_args["beta"] == 2
    assert config("e240", "reviewkd").method_args["warmup_epochs"] == 20
    ckd, paper = config("e120", "ckd"), config("e120", "ckd-paper")
    assert (ckd.epochs, ckd.optim.milestones) == (120, [75, 90, 105])
    assert (paper.epochs, paper.optim.milestones, paper.method) == (240, [150, 180, 210], "ckd")
    assert config("e120", "refilled").method_args["budget"] == "equal"
    assert config("e120", "refilled-paper").method_args.get("budget", "paper") == "paper"
    assert config("e120", "ickd-online").method == "ickd_online"
    # teacher-free: the selection's settings, key for key (the suite adopts the sweeps' runs by them), the in-context
    # term warming up over a tenth of the schedule
    assert config("e240", "ickd-tf").method_args == {"picd_weight": 0, "nicd_weight": 0.5, "warmup_epochs": 24}
    assert config("e120", "ickd-tf").method_args["warmup_epochs"] == 12
    # Tf-KD's self-teacher: the student's own architecture, trained plainly at the chosen schedule, named as the
    # row's teacher model so that its checkpoint loads
    bench = AccuracyBench(SUITES.get("cifar10-paper-cpu"), budget="e240", root=tmp_path, results=tmp_path)
    row = {v.name: v for v in bench.variants(None)}["tfkd-self"]
    teacher = bench.teacher_config(row)[0]
    student = config("e240", "tfkd-self")
    assert (teacher.student, teacher.method, teacher.epochs, teacher.optim.milestones) == ("resnet8", "ce", 240,
                                                                                         [150, 180, 210])
    assert (student.student, student.teacher, student.method_args["mode"]) == ("resnet8", "resnet8", "self")
    bf16, fp32 = config("e240", "kd-bf16"), config("e240", "kd")  # the precision check: only amp and layout differ
    # (the float32 row's layout is the default, auto: contiguous for its compiled run)
    assert (bf16.amp, bf16.channels_last, fp32.amp, fp32.channels_last) == (True, True, False, "auto")
    assert {**vars(bf16), "amp": False, "channels_last": "auto", "out": fp32.out} == vars(fp32)


def test_kr_capacity_suite_shares_the_paper_teacher_and_records_convergence(tmp_path):
    from pathlib import Path

    from kdforge.bench.accuracy import AccuracyBench
    from kdforge.bench.suites import SUITES
    from kdforge.plots import epoch_to_fraction

    kr = AccuracyBench(SUITES.get("cifar10-paper-kr-cpu"), budget="e120", root=tmp_path, results=tmp_path)
    paper = AccuracyBench(SUITES.get("cifar10-paper-cpu"), budget="e120", root=tmp_path, results=tmp_path)
    assert kr.teacher_config()[1] == paper.teacher_config()[1]  # one teacher, trained once
    rows = {v.name: v for v in kr.variants(None)}
    assert len(rows) == 12 and kr.student_config(rows["resnet8x0.5/kr"], 0, Path("t"))[0].student == "resnet8x0.5"
    run = tmp_path / "run"
    run.mkdir()
    curve = [(12, 30.0), (24, 55.0), (36, 63.0), (48, 66.0), (60, 70.0)]  # 90 % of 70 is 63
    (run / "metrics.jsonl").write_text("".join(
        f'{{"type": "eval", "epoch": {e}, "test_top1": {t}}}\n' for e, t in curve))
    assert epoch_to_fraction(run) == 36


def test_verdicts_read_the_paired_interval_per_claim_and_cell():
    from kdforge.bench.results_page import verdict_lines

    def rows(table):
        return [{"method": m, "seed": str(s), "top1_last": str(v)} for m, vs in table.items() for s, v in enumerate(vs)]

    lines = verdict_lines(rows({"ce": [70.0, 71.0, 72.0], "kd": [73.0, 74.0, 75.0], "ckd": [74.0, 75.1, 75.9],
                                "dml": [72.0, 73.0, 74.0], "ickd-online": [70.0, 70.5, 71.0]}))
    # ckd - kd = [1.0, 1.1, 0.9]: mean 1.0, sd 0.1, half-width 4.303 * 0.1 / sqrt(3) = 0.248
    assert "- `ckd` **beats** `kd`: +1.00 [+0.75, +1.25] (n=3)" in lines
    assert any(line.startswith("- `ickd-online` **loses to** `dml`") for line in lines)
    assert any(line.startswith("- `ickd-online` ties `ce`") for line in lines)  # -1.5 +- 2.2: the interval spans 0
    cells = verdict_lines(rows({"same/ce": [70.0], "same/refilled": [71.0]}))
    assert cells == ["- `same/refilled` vs `same/ce`: +1.00 (one seed: no verdict)"]
    incremental = verdict_lines(rows({"same/ce": [70.0, 71.0, 72.0], "incremental/refilled": [68.0, 68.5, 70.0]}),
                                {"incremental": "same"})
    assert incremental[0].startswith("- `incremental/refilled` **loses to** `same/ce`: -2.17")
    # a paper-budget row beside its equal-budget twin: the longer schedule's own share of a gain
    twins = verdict_lines(rows({"overlap/refilled": [70.0, 71.0, 72.0], "overlap/refilled-paper": [71.0, 72.2, 72.8]}))
    # differences [1.0, 1.2, 0.8]: mean 1.0, sd 0.2, half-width 4.303 * 0.2 / sqrt(3) = 0.497
    assert twins == ["- `overlap/refilled-paper` **beats** `overlap/refilled`: +1.00 [+0.50, +1.50] (n=3)"]


def test_a_few_shot_claim_is_read_on_novel_class_episodes_not_on_base_class_top1(tmp_path):
    import json

    res = tmp_path / "results"
    res.mkdir()
    # base-class top-1: refilled 2 points above ce on every seed, which the glance must not call the few-shot claim
    for name, values in {"fewshot/ce": [70.0, 71.0, 72.0], "fewshot/refilled": [72.0, 73.0, 74.0]}.items():
        for seed, value in enumerate(values):
            append_row(res / "cifar10-paper-gkd-cpu-e240.csv", {"method": name, "seed": str(seed), "epochs": "240",
                                                                 "top1_last": str(value), "top1_best": str(value)})
    page = write_results_page(res, tmp_path / "docs" / "RESULTS.md").read_text()
    glance = page[page.index("## The seed methods' claims at a glance"):page.index("## cifar10-paper-cpu")]
    assert "base-class top-1" not in glance and "+2.00" not in glance
    assert ("- `fewshot/refilled`: novel-class episodes not read yet (`.venv/bin/python bench/refilled_protocols.py "
            "--suite cifar10-paper-gkd-cpu --budget e240`)") in glance
    assert "- `fewshot/refilled` **beats** `fewshot/ce` on base-class top-1: +2.00" in page  # the suite's own table

    def episodes(means):
        return {str(seed): {"1-shot": {"mean": one}, "5-shot": {"mean": five}} for seed, (one, five) in enumerate(means)}

    # 1-shot differences [1.0, 1.2, 0.8]: mean 1.0, sd 0.2, half-width 4.303 * 0.2 / sqrt(3) = 0.497;
    # 5-shot differences [-1.0, -1.2, -0.8]: the mirror image
    record = {"fewshot": {"ce (no teacher)": episodes([(40.0, 50.0), (41.0, 51.0), (42.0, 52.0)]),
                          "refilled": episodes([(41.0, 49.0), (42.2, 49.8), (42.8, 51.2)])}}
    (res / "cifar10-paper-gkd-cpu-e240-protocols.json").write_text(json.dumps(record))
    (res / "cifar10-paper-gkd-cpu-e240-protocols.md").write_text("# protocols\n")
    page = write_results_page(res, tmp_path / "docs" / "RESULTS.md").read_text()
    glance = page[page.index("## The seed methods' claims at a glance"):page.index("## cifar10-paper-cpu")]
    assert ("  - `fewshot/refilled` **beats** `fewshot/ce` on novel-class 5-way 1-shot episodes: +1.00 [+0.50, +1.50] "
            "(n=3)\n  - `fewshot/refilled` **loses to** `fewshot/ce` on novel-class 5-way 5-shot episodes: -1.00 "
            "[-1.50, -0.50] (n=3)") in glance
    assert "[cifar10-paper-gkd-cpu-e240-protocols.md](../results/cifar10-paper-gkd-cpu-e240-protocols.md)" in page


def test_a_switched_row_is_read_against_its_own_method():
    from kdforge.bench.results_page import switch_block, switch_verdicts

    def rows(table):
        return [{"method": m, "seed": str(s), "top1_last": str(v)} for m, vs in table.items() for s, v in enumerate(vs)]

    table = rows({"kd": [73.0, 74.0, 75.0], "dkd": [74.0, 75.0, 76.0], "dkd+logitstd": [74.5, 75.1, 76.9],
                  "kd+logitstd": [72.0, 73.0, 74.0], "cell/ckd": [70.0, 71.0], "cell/ckd+logitstd": [71.0, 72.0]})
    lines = switch_verdicts(table)
    # dkd+logitstd - dkd = [0.5, 0.1, 0.9]: mean 0.5, sd 0.4, half-width 4.303 * 0.4 / sqrt(3) = 0.994
    assert "- `dkd+logitstd` ties `dkd`: +0.50 [-0.49, +1.49] (n=3)" in lines
    assert "- `kd+logitstd` **loses to** `kd`: -1.00 [-1.00, -1.00] (n=3)" in lines  # sd 0: a point interval
    assert "- `cell/ckd+logitstd` **beats** `cell/ckd`: +1.00 [+1.00, +1.00] (n=2)" in lines  # within its cell
    assert len(lines) == 3  # nothing for rows without a switch
    assert switch_verdicts(rows({"dkd+logitstd": [1.0, 2.0]})) == []  # no base row: no line
    assert switch_block(rows({"kd": [1.0], "ce": [2.0]})) == []
    assert switch_block(table)[:2] == ["A switch against the method it is switched on in (paired 95 % intervals, "
                                       "last epoch):", ""]


def test_the_glance_says_where_the_teacher_ends_below_its_kd_student():
    from kdforge.bench.results_page import teacher_lines

    rows = [{"method": m, "seed": str(s), "top1_last": str(v), "teacher_top1": str(t)}
            for m, t, vs in (("kd", 75.0, [76.0, 77.0]), ("ce", "", [70.0, 71.0]), ("big/kd", 80.0, [77.0, 78.0]))
            for s, v in enumerate(vs)]
    assert teacher_lines(rows) == [
        "- the teacher of `big/kd`: 80.00 % test top-1, 2.50 points above its `big/kd` student (77.50 %, n=2)",
        "- the teacher of `kd`: 75.00 % test top-1, 1.50 points below its `kd` student (76.50 %, n=2)"]


def test_a_claim_without_a_verdict_is_said_to_be_unmeasured():
    from kdforge.bench.results_page import pending_lines
    from kdforge.bench.suites import SUITES
    from kdforge.methods import METHODS

    def rows(names):
        return [{"method": m, "seed": "0", "top1_last": "70"} for m in names]

    gkd = SUITES.get("cifar10-paper-gkd-cpu")
    lines = pending_lines(gkd, rows(["same/ce", "same/kd", "same/refilled", "same/refilled-paper", "overlap/refilled",
                                     "incremental/refilled"]))
    # overlap/refilled ran but its ce and kd rows did not; incremental's ce is same/ce's (the suite's ce_cells)
    assert "- `overlap/refilled` vs `overlap/ce`: not measured yet" in lines
    assert "- `disjoint/refilled`: not measured yet" in lines and "- `fewshot/refilled-paper`: not measured yet" in lines
    assert not any(line.startswith(("- `same/", "- `incremental/refilled` ")) for line in lines)
    # a suite without cells: its paradigm row that has not run
    main = SUITES.get("cifar10-paper-cpu")
    every = [v.name for v in main.variants(METHODS.names())]
    assert pending_lines(main, rows([n for n in every if n != "ickd-online"])) == ["- `ickd-online`: not measured yet"]


def test_paper_gkd_suite_runs_each_setting_at_both_budgets_on_the_shared_teacher(tmp_path):
    from pathlib import Path

    from kdforge.bench.accuracy import AccuracyBench
    from kdforge.bench.suites import SUITES

    gkd = AccuracyBench(SUITES.get("cifar10-paper-gkd-cpu"), budget="e120", root=tmp_path, results=tmp_path)
    paper = AccuracyBench(SUITES.get("cifar10-paper-cpu"), budget="e120", root=tmp_path, results=tmp_path)
    rows = {v.name: v for v in gkd.variants(None)}
    assert gkd.teacher_config(rows["same/kd"])[1] == paper.teacher_config()[1]
    for cell in ("same", "overlap", "disjoint", "incremental", "fewshot"):
        equal = gkd.student_config(rows[f"{cell}/refilled"], 0, Path("t"))[0]
        full = gkd.student_config(rows[f"{cell}/refilled-paper"], 0, Path("t"))[0]
        assert equal.method_args["budget"] == "equal" and full.method_args.get("budget", "paper") == "paper"
        assert equal.data.classes == full.data.classes
    assert gkd.student_config(rows["disjoint/refilled"], 0, Path("t"))[0].data.classes == [5, 6, 7, 8, 9]
    assert gkd.teacher_config(rows["disjoint/refilled"])[0].data.classes == [0, 1, 2, 3, 4]
    assert SUITES.get("cifar10-paper-gkd-cpu").foreign_teacher_cells() == {"overlap", "disjoint", "incremental"}


def test_a_run_revalidated_on_its_own_split_size_matches_its_summary_and_a_larger_split_stays_outside_training(
        tmp_path):
    import json

    from kdforge.bench.revalidate import validation_top1
    from kdforge.config import load_config
    from kdforge.engine.pipeline import train
    from kdforge.errors import ConfigError

    run = tmp_path / "run"
    summary = train(load_config("digits-student", ["data.train_per_class=60", "data.val_per_class=10", "epochs=2",
                                                   "threads=1", "progress=false", "tensorboard=false",
                                                   f"out={run}"]), echo=lambda m: None)
    assert validation_top1(run, 10) == pytest.approx(summary["val_top1_last"], abs=1e-9)
    larger = validation_top1(run, 40)  # digits' training split has about 125 per class: 65 outside the 60
    stored = json.loads((run / "val-40.json").read_text())
    assert stored["top1"] == larger and stored["images"] == 400
    # 100 training images per class leave about 25 of digits' training split outside: 40 would be carved from them
    wide = tmp_path / "wide"
    train(load_config("digits-student", ["data.train_per_class=100", "data.val_per_class=10", "epochs=1",
                                         "threads=1", "progress=false", "tensorboard=false", f"out={wide}"]),
          echo=lambda m: None)
    with pytest.raises(ConfigError, match="do not fit outside the training subset"):
        validation_top1(wide, 40)
    assert not (wide / "val-40.json").exists()


def test_gpu_campaign_packs_each_job_and_merge_appends_its_rows_once(tmp_path):
    """bench/gpu_campaign.sh's two halves on a small CPU suite: `run` packs each job's run folder, CSV and log
    into one file; `merge` puts the runs back and appends the rows it does not have, once."""
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "GPU_CAMPAIGN_SUITE": "digits", "GPU_CAMPAIGN_BUDGET": "small",
           "GPU_CAMPAIGN_RUNS": str(tmp_path / "device-runs"), "GPU_CAMPAIGN_RESULTS": str(tmp_path / "res")}
    script = str(repo / "bench" / "gpu_campaign.sh")
    done = subprocess.run(["bash", script, "run", "300", "ce:0", "ce:1"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["job-1.tar.gz", "job-2.tar.gz"]
    here = {**env, "GPU_CAMPAIGN_RUNS": str(tmp_path / "runs")}
    for _ in range(2):  # a second merge of the same files adds nothing
        merged = subprocess.run(["bash", script, "merge", str(out)], env=here, capture_output=True, text=True,
                                timeout=300)
        assert merged.returncode == 0, merged.stderr[-2000:]
    rows = read_rows(tmp_path / "res" / "digits.csv")
    assert sorted((r["method"], r["seed"]) for r in rows) == [("ce", "0"), ("ce", "1")]
    for seed in (0, 1):
        run = tmp_path / "runs" / "digits" / f"ce-s{seed}"
        assert (run / "summary.json").exists() and (run / "checkpoint.pt").exists()
        assert not (run / "checkpoint.prev.pt").exists()


def test_a_suite_key_hashes_what_is_trained_and_an_older_folder_is_found_by_what_it_trains(tmp_path):
    import json

    from kdforge.bench.accuracy import config_key, find_trained
    from kdforge.config import load_config, to_dict

    cfg = load_config("digits-teacher", ["epochs=2"])
    # how a run is executed does not change the key; what it trains does
    assert config_key(cfg, "d") == config_key(load_config("digits-teacher", ["epochs=2", "device=cpu", "threads=2",
                                                                             "out=elsewhere", "progress=false"]), "d")
    assert config_key(cfg, "d") != config_key(load_config("digits-teacher", ["epochs=3"]), "d")
    assert config_key(cfg, "d") != config_key(cfg, "other images")
    old = tmp_path / "teachers" / "digits-0123456789ab"  # named by an older form of the key
    old.mkdir(parents=True)
    (old / "config.json").write_text(json.dumps({"config": {**to_dict(cfg), "out": str(old), "threads": 1}}))
    wanted = tmp_path / "teachers" / f"digits-{config_key(cfg, 'd')}"
    assert find_trained(wanted, cfg) == old
    assert find_trained(wanted, load_config("digits-teacher", ["epochs=3"])) == wanted  # trains something else
    (tmp_path / "teachers" / "digits-other-0123456789ab").mkdir()  # another stem is never taken
    wanted.mkdir()
    assert find_trained(wanted, cfg) == wanted  # the exact name first


def test_bench_teacher_names_the_folder_the_suite_rows_distil_from(tmp_path, capsys):
    import json
    from pathlib import Path

    from kdforge.bench.accuracy import suite_teacher
    from kdforge.cli import main

    root = tmp_path / "runs"
    # an older teacher of the same suite with other settings sits beside it: never the one named
    stale = root / "teachers" / "digits-000000000000"
    stale.mkdir(parents=True)
    (stale / "summary.json").write_text("{}")
    res = ["--results", str(tmp_path / "res")]
    assert main(["bench", "teacher", "digits", "--root", str(root), "--no-train", *res]) == 2
    assert "no finished teacher" in capsys.readouterr().err
    assert main(["bench", "teacher", "digits", "--root", str(root), "--threads", "1", *res]) == 0
    folder = capsys.readouterr().out.strip()
    assert folder != str(stale) and (Path(folder) / "summary.json").exists()
    run_accuracy("digits", seeds=1, methods=["kd"], root=str(root), results=str(tmp_path / "res"), threads=1,
                 echo=lambda m: None)
    student = json.loads((root / "digits" / "kd-s0" / "summary.json").read_text())
    assert student["config"]["teacher_checkpoint"].startswith(folder)
    assert str(suite_teacher("digits", root=str(root), train=False, results=str(tmp_path / "res"))) == folder
    assert str(suite_teacher("digits", root=str(root), train=False, row="kd", results=str(tmp_path / "res"))) == folder  # rows share it here


def test_adopt_takes_a_sweeps_runs_into_the_suite_rows_with_exactly_their_settings(tmp_path):
    import json
    import shutil

    from kdforge.bench.adopt import adopt_runs
    from kdforge.config import settings_differences

    root, sweep = tmp_path / "runs", tmp_path / "sweep"
    args = dict(root=str(root), results=str(tmp_path / "a"), threads=1, echo=lambda m: None)
    run_accuracy("digits", seeds=2, methods=["ce", "kd"], **args)
    trained = {(r["method"], r["seed"]): r["top1_last"] for r in read_rows(tmp_path / "a" / "digits.csv")}
    # the suite's runs become a sweep's folder (the teacher stays where the suite keeps it) ...
    shutil.move(root / "digits", sweep)
    # ... and one of them is made to record other settings: never adopted
    for name in ("config.json", "summary.json"):
        data = json.loads((sweep / "kd-s1" / name).read_text())
        data["config"]["optim"]["lr"] = 0.5
        (sweep / "kd-s1" / name).write_text(json.dumps(data))
    adopted = adopt_runs(sweep, "digits", results=tmp_path / "b", root=root, echo=lambda m: None)
    assert sorted(adopted) == ["ce seed 0", "ce seed 1", "kd seed 0"]
    rows = {(r["method"], r["seed"]): r["top1_last"] for r in read_rows(tmp_path / "b" / "digits.csv")}
    assert rows == {k: v for k, v in trained.items() if k != ("kd", "1")}
    assert (root / "digits" / "kd-s0" / "metrics.jsonl").exists() and not (root / "digits" / "kd-s1").exists()
    assert adopt_runs(sweep, "digits", results=tmp_path / "b", root=root, echo=lambda m: None) == []
    # a folder path written with or without its trailing slash is the same setting
    config = json.loads((root / "digits" / "kd-s0" / "config.json").read_text())["config"]
    assert not settings_differences({**config, "teacher_checkpoint": config["teacher_checkpoint"] + "/"}, config)


def test_bench_status_counts_recorded_seeds_runs_under_way_and_hours_left(tmp_path):
    import json

    from kdforge.bench.status import status_table, suite_status

    (tmp_path / "res").mkdir()
    for seed, wall in ((0, 3600.0), (1, 7200.0)):
        append_row(tmp_path / "res" / "digits.csv", {"method": "ce", "seed": seed, "top1_last": 90.0, "top1_best": 90.0,
                                                     "epochs": 30, "wall_seconds": wall, "images_per_second": 1.0})
    # a killed staged run: 12 epochs in stage 1, 3 in stage 2
    for stage, epochs in (("stage1", 12), ("stage2", 3)):
        (tmp_path / "runs" / "digits" / "refilled-s0" / stage).mkdir(parents=True)
        records = [{"type": "epoch", "epoch": e} for e in range(1, epochs + 1)] + [{"type": "eval", "epoch": epochs}]
        (tmp_path / "runs" / "digits" / "refilled-s0" / stage / "metrics.jsonl").write_text(
            "\n".join(json.dumps(r) for r in records) + "\n")
    status = {s["row"]: s for s in suite_status("digits", seeds=3, methods=["ce", "refilled"], root=tmp_path / "runs",
                                                results=tmp_path / "res")}
    assert status["ce"]["done"] == [0, 1] and status["ce"]["todo"] == [2]
    assert status["ce"]["hours_left"] == pytest.approx(1.5)  # one run at the row's mean pace, 5,400 s
    assert status["refilled"]["running"] == {0: 15} and status["refilled"]["todo"] == [1, 2]
    # refilled has no recorded run: timed at the suite's median pace per epoch (5,400 s / 30 epochs)
    planned = status["refilled"]["epochs"]
    assert status["refilled"]["estimated"]
    assert status["refilled"]["hours_left"] == pytest.approx((2 + 1 - 15 / planned) * planned * 180 / 3600)
    table = status_table(list(status.values()))
    assert "| refilled | – | s0: 15/" in table and "~" in table
    # a suite with no recorded run has no pace: its hours are unknown, never a made-up or NaN figure
    fresh = suite_status("digits", seeds=2, methods=["ce"], root=tmp_path / "none", results=tmp_path / "none")
    assert fresh[0]["hours_left"] is None and fresh[0]["runs_left"] == 2
    table = status_table(fresh)
    assert "| ce | – | – | 0, 1 | ? |" in table and "\n2 runs left, lane-hours unknown" in table
    assert "about 0.0" not in table
    assert "nan" not in table


def test_bench_status_times_a_row_without_runs_at_its_cells_pace(tmp_path):
    from kdforge.bench.status import campaign_status, campaign_table, suite_status

    (tmp_path / "res").mkdir()
    csv = tmp_path / "res" / "cifar10-paper-kr-cpu-e240.csv"
    for row, wall in (("resnet14/ce", 4800.0), ("resnet8/ce", 1200.0), ("resnet8/kd", 1440.0)):
        append_row(csv, {"method": row, "seed": 0, "top1_last": 70.0, "top1_best": 70.0, "epochs": 240,
                         "wall_seconds": wall, "images_per_second": 1.0})
    status = {s["row"]: s for s in suite_status("cifar10-paper-kr-cpu", "e240", seeds=1,
                                                methods=["resnet14/kd", "resnet8x0.5/kd"], root=tmp_path / "runs",
                                                results=tmp_path / "res")}
    assert status["resnet14/kd"]["hours_left"] == pytest.approx(4800 / 3600)  # resnet14's one run, not the median
    assert status["resnet8x0.5/kd"]["hours_left"] == pytest.approx(1440 / 3600)  # no cell runs: the suite's median
    # the overview reads a suite at the budget holding most of its runs (a shorter schedule's one run aside)
    append_row(tmp_path / "res" / "cifar10-paper-kr-cpu-e30.csv", {"method": "resnet8/ce", "seed": 0, "top1_last": 60.0,
                                                                   "top1_best": 60.0, "epochs": 30, "wall_seconds": 9.0,
                                                                   "images_per_second": 1.0})
    [entry] = campaign_status(seeds=1, root=tmp_path / "runs", results=tmp_path / "res")
    assert (entry["suite"], entry["budget"], entry["recorded"]) == ("cifar10-paper-kr-cpu", "e240", 3)
    assert entry["runs_left"] == 9 and entry["estimated"]  # 12 rows at one seed, 3 recorded
    assert "| cifar10-paper-kr-cpu | e240 | 3 | 9 | ~" in campaign_table([entry])


def test_bench_status_times_a_cell_without_runs_by_the_classes_it_trains_on(tmp_path):
    from kdforge.bench.status import suite_status

    (tmp_path / "res").mkdir()
    for seed, wall in ((0, 2400.0), (1, 3600.0), (2, 3000.0)):  # all ten classes, median 3,000 s a run
        append_row(tmp_path / "res" / "cifar10-paper-gkd-cpu-e240.csv",
                   {"method": "same/ce", "seed": seed, "top1_last": 70.0, "top1_best": 70.0, "epochs": 240,
                    "wall_seconds": wall, "images_per_second": 1.0})
    rows = ["overlap/ce", "disjoint/ce", "incremental/rkd"]
    status = {s["row"]: s for s in suite_status("cifar10-paper-gkd-cpu", "e240", seeds=1, methods=rows,
                                                root=tmp_path / "runs", results=tmp_path / "res")}
    # overlap trains on 6 of the 10 classes, disjoint on 5; an incremental student learns all ten
    assert status["overlap/ce"]["hours_left"] == pytest.approx(0.6 * 3000 / 3600)
    assert status["disjoint/ce"]["hours_left"] == pytest.approx(0.5 * 3000 / 3600)
    assert status["incremental/rkd"]["hours_left"] == pytest.approx(3000 / 3600)
    # once the cell has a run of its own, its rows are timed by it (the same share of the classes)
    append_row(tmp_path / "res" / "cifar10-paper-gkd-cpu-e240.csv",
               {"method": "disjoint/ce", "seed": 0, "top1_last": 80.0, "top1_best": 80.0, "epochs": 240,
                "wall_seconds": 1000.0, "images_per_second": 1.0})
    [disjoint] = suite_status("cifar10-paper-gkd-cpu", "e240", seeds=1, methods=["disjoint/rkd"],
                              root=tmp_path / "runs", results=tmp_path / "res")
    assert disjoint["hours_left"] == pytest.approx(1000 / 3600)  # its cell's run, at the same share
    # a sitting with an end times the rows the same way
    from kdforge.bench.accuracy import AccuracyBench
    from kdforge.bench.suites import SUITES

    bench = AccuracyBench(SUITES.get("cifar10-paper-gkd-cpu"), "e240", tmp_path / "runs", tmp_path / "res",
                          echo=lambda m: None)
    assert [bench.class_share(r) for r in ("same/kd", "overlap/rkd", "fewshot/refilled", "incremental/refilled",
                                           "no-such-row")] == [1.0, 0.6, 0.5, 1.0, 1.0]


def test_suite_speed_trains_each_row_with_the_new_and_the_old_defaults_and_sums_their_wall_time(tmp_path):
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "suite_speed.py"
    (tmp_path / "res").mkdir()
    for seed, top1 in ((0, 80.0), (1, 99.0)):  # the row's recorded spread: 80 to 99
        append_row(tmp_path / "res" / "digits.csv", {"method": "kd", "seed": seed, "top1_last": top1, "top1_best": top1,
                                                     "epochs": 30, "wall_seconds": 1.0, "images_per_second": 1.0})
    args = [sys.executable, str(script), "--suite", "digits", "--methods", "ce,kd", "--threads", "1",
            "--results", "res", "--out", "speed.json"]
    # kd first, alone: measuring ce (earlier in the suite's order) afterwards must keep kd's row in the JSON
    first = subprocess.run([a if a != "ce,kd" else "kd" for a in args], cwd=tmp_path, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr
    kd_row = json.loads((tmp_path / "speed.json").read_text())["rows"]["kd"]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "speed.json").read_text())
    rows = report["rows"]
    assert list(rows) == ["ce", "kd"] and rows["kd"] == kd_row and "kd:" not in done.stdout
    assert report["wall_seconds"]["new"] == pytest.approx(sum(r["new"]["wall_seconds"] for r in rows.values()))
    assert report["ratio_new_to_old"] == pytest.approx(report["wall_seconds"]["new"] / report["wall_seconds"]["old"])
    # the old side runs without the cache; the new side's kd fills a cache that starts empty
    assert rows["kd"]["old"]["teacher_cache"] is None and rows["kd"]["new"]["teacher_cache"]["epochs_computed"] == 30
    # the new side undoes the suite's float32 pin: bf16 where this machine has it, as a user's run
    import torch

    from kdforge.engine.run import amp_decision

    assert rows["kd"]["old"]["amp"] is False and rows["kd"]["new"]["amp"] is amp_decision("auto", torch.device("cpu"))[0]
    assert rows["kd"]["recorded_spread"] == [80.0, 99.0] and rows["kd"]["new_within_spread"] is True
    assert rows["ce"]["recorded_spread"] is None
    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)  # resumable: reads back
    assert json.loads((tmp_path / "speed.json").read_text())["rows"] == rows and again.returncode == 0
    # a new machine has the JSON but none of the run folders: the finished rows are read back, not trained again
    shutil.rmtree(tmp_path / "runs" / "suite-speed")
    fresh = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads((tmp_path / "speed.json").read_text())["rows"] == rows
    assert not list((tmp_path / "runs" / "suite-speed").glob("new*")) and "[1/2]" not in fresh.stdout
    # a JSON that measured something else (another seed) is not read back
    other = subprocess.run(args + ["--seed", "1", "--methods", "ce"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=600)
    assert other.returncode == 0 and "[1/1] ce" in other.stdout
    assert json.loads((tmp_path / "speed.json").read_text())["seed"] == 1
    # a sitting with an end starts a row only when both its sides can finish by then (kd: 1 s a run recorded)
    late = subprocess.run(args + ["--seed", "2", "--methods", "kd", "--finish-by", "2026-01-01T00:00"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert late.returncode == 3 and late.stderr.strip().startswith("bench/suite_speed.py: 1 run(s) not started")
    assert ("[1/1] kd seed 2: not started: it needs about 0 min (2 side(s), each as the row's slowest recorded run)"
            in late.stdout)
    assert not list((tmp_path / "runs" / "suite-speed").glob("new*/kd-s2"))
    bad = subprocess.run(args + ["--finish-by", "later"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_suite_speed_times_the_rows_left_by_this_sittings_pace_once_it_has_measured_some():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "suite_speed.py"
    spec = importlib.util.spec_from_file_location("suite_speed", path)
    suite_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite_speed)
    runs = {"ce": (400, 600, 500), "at": (3000, 700, 650)}  # at's 3,000 s: a sitting on a slower CPU
    recorded = [{"method": m, "epochs": "15", "wall_seconds": str(w)} for m, walls in runs.items() for w in walls]
    # nothing measured yet: the row's slowest recorded run, as a suite's sitting times it
    assert suite_speed.side_seconds(recorded, "at", 15, {}) == (3000.0, "the row's slowest recorded run")
    # ce measured here at 0.6x and 1.1x its recorded median (500 s): at's median (700 s) x 1.1
    measured = {"ce": {"new": {"wall_seconds": 300.0}, "old": {"wall_seconds": 550.0}}}
    seconds, basis = suite_speed.side_seconds(recorded, "at", 15, measured)
    assert seconds == pytest.approx(770.0) and basis.startswith("the row's median recorded run x 1.10")
    # a row with no recorded run: the table's median pace per epoch (650 s over 15 epochs) x 1.1
    seconds, basis = suite_speed.side_seconds(recorded, "nst", 15, measured)
    assert seconds == pytest.approx(715.0) and basis.startswith("the table's median pace per epoch")
    assert suite_speed.side_seconds([], "nst", 15, {}) is None  # nothing to time it by: it starts


def test_a_cell_whose_runs_name_different_teachers_is_flagged_and_a_consistent_one_is_not():
    from kdforge.bench.report import mixed_teacher_lines

    row = lambda method, seed, teacher: {"method": method, "seed": str(seed), "teacher_top1": teacher}  # noqa: E731
    consistent = [row("same/ce", 0, "81.3200"), row("same/kd", 0, "81.32"), row("overlap/ce", 1, "84.7800"),
                  row("overlap/rkd", 1, "84.78"), row("fewshot/ce", 0, "")]
    assert mixed_teacher_lines(consistent) == []
    stale = consistent + [row("overlap/rkd", 0, "81.7333")]
    (line,) = mixed_teacher_lines(stale)
    assert "cell `overlap`" in line and "81.73: overlap/rkd s0" in line and "84.78: overlap/ce s1, overlap/rkd s1" in line
    assert mixed_teacher_lines([row("kd", 0, "87.61"), row("ce", 1, "87.62")]) == []  # folding rounds the last digit
    assert mixed_teacher_lines([row("kd", 0, "80"), row("ce", 1, "81")])[0].startswith("- **Mixed teachers**:")
    # a row with a teacher of its own by design (Tf-KD's self-teacher) is checked against itself alone
    own = [row("kd", 0, "75.38"), row("kd", 1, "75.38"), row("tfkd-self", 0, "73.62"), row("tfkd-self", 1, "73.62")]
    assert mixed_teacher_lines(own, {"tfkd-self"}) == [] and len(mixed_teacher_lines(own)) == 1
    (line,) = mixed_teacher_lines(own + [row("tfkd-self", 2, "70.00")], {"tfkd-self"})
    assert "in row `tfkd-self`" in line and "70.00: tfkd-self s2" in line and "kd s0" not in line
    from kdforge.bench.suites import SUITES

    assert SUITES.get("cifar10-paper-cpu").own_teacher_rows() == {"tfkd-self"}
    assert SUITES.get("cifar10-paper-gkd-cpu").own_teacher_rows() == set()  # cells carry their teachers


def test_bench_status_plans_every_stage_of_a_staged_row(tmp_path):
    from kdforge.bench.status import suite_status

    status = {s["row"]: s for s in suite_status("cifar10-paper-cpu", "e240", seeds=1,
                                                methods=["ce", "refilled", "refilled-paper"],
                                                root=tmp_path / "runs", results=tmp_path / "res")}
    # REFILLED's two stages share the 240 epochs at the equal budget and each run them all at the paper's
    assert [status[r]["epochs"] for r in ("ce", "refilled", "refilled-paper")] == [240, 240, 480]


def test_bench_status_reads_the_detection_suite_too(tmp_path):
    import json

    from kdforge.bench.detection import COLUMNS as DETECTION_COLUMNS
    from kdforge.bench.status import campaign_status, status_table, suite_status

    # the file as `kdforge bench detection` writes it: box AP columns, no top-1
    (tmp_path / "res").mkdir()
    rows = [{"method": m, "seed": 0, "ap_last": 20.0, "epochs": 12, "wall_seconds": w} for m, w in (("ce", 1200.0),
                                                                                                  ("kd", 1800.0))]
    (tmp_path / "res" / "detection-cpu.csv").write_text("\n".join(
        [",".join(DETECTION_COLUMNS), *[",".join(str(r.get(c, "")) for c in DETECTION_COLUMNS) for r in rows]]) + "\n")
    folder = tmp_path / "runs" / "detection-cpu" / "ckd-s0"  # killed after 6 of its 12 epochs
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"type": "epoch", "epoch": e}) + "\n" for e in range(1, 7)))
    status = {s["row"]: s for s in suite_status("detection-cpu", seeds=2, methods=["ce", "ckd"],
                                                root=tmp_path / "runs", results=tmp_path / "res")}
    assert (status["ce"]["done"], status["ce"]["todo"], status["ce"]["epochs"]) == ([0], [1], 12)
    assert status["ce"]["hours_left"] == pytest.approx(1200 / 3600)
    # ckd has no recorded run: half a run and a whole one at the suite's median pace (100 and 150 s per epoch)
    assert status["ckd"]["running"] == {0: 6} and status["ckd"]["todo"] == [1] and status["ckd"]["estimated"]
    assert status["ckd"]["hours_left"] == pytest.approx(1.5 * 125 * 12 / 3600)
    assert "| ckd | – | s0: 6/12 | 1 | ~0.6 |" in status_table(list(status.values()))
    # the overview: the one suite with recorded runs here
    overview = campaign_status(seeds=2, root=tmp_path / "runs", results=tmp_path / "res")
    assert [(e["suite"], e["recorded"]) for e in overview] == [("detection-cpu", 2)]


def test_bench_status_marks_runs_of_a_teacher_the_suite_no_longer_has(tmp_path):
    import json

    from kdforge.bench.accuracy import AccuracyBench
    from kdforge.bench.status import status_table, suite_status
    from kdforge.bench.suites import SUITES

    bench = AccuracyBench(SUITES.get("digits"), "small", tmp_path / "runs", tmp_path / "res", echo=lambda m: None)
    _, teacher_folder = bench.teacher_config(None)
    teacher_folder.mkdir(parents=True)
    (teacher_folder / "summary.json").write_text(json.dumps({"top1_last": 90.0}))  # the teacher as it is now
    (tmp_path / "res").mkdir()
    for method, seed, teacher in (("kd", 0, 90.04), ("kd", 1, 85.0), ("ce", 0, 85.0)):
        append_row(tmp_path / "res" / "digits.csv", {"method": method, "seed": seed, "top1_last": 90.0, "top1_best": 90.0,
                                                     "epochs": 30, "wall_seconds": 1.0, "images_per_second": 1.0,
                                                     "teacher_top1": teacher})
    status = {s["row"]: s for s in suite_status("digits", methods=["ce", "kd"], root=tmp_path / "runs",
                                                results=tmp_path / "res")}
    assert status["kd"]["stale"] == [1]  # 90.04 is the same teacher, rounded; 85 an older one
    assert status["ce"]["stale"] == []  # ce uses no teacher: the teacher it names does not matter
    table = status_table(list(status.values()))
    assert "| kd | 0, 1 (older teacher) |" in table and "| ce | 0 |" in table and "kdforge bench withdraw" in table


def _recorded_digits_suite(tmp_path, runs: list[tuple[str, int, float]]):
    """A digits results CSV with the given (row, seed, teacher top-1) runs and a finished run folder for each."""
    import json

    for method, seed, teacher in runs:
        append_row(tmp_path / "res" / "digits.csv", {"method": method, "seed": seed, "top1_last": 90.0 + seed,
                                                     "top1_best": 90.0, "epochs": 30, "wall_seconds": 1.0,
                                                     "images_per_second": 1.0, "teacher_top1": teacher})
        folder = tmp_path / "runs" / "digits" / f"{method}-s{seed}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"top1_last": 90.0 + seed}))


def test_bench_withdraw_moves_runs_out_of_the_table_and_keeps_them_with_the_reason(tmp_path):
    from kdforge.bench.withdraw import withdraw

    _recorded_digits_suite(tmp_path, [("kd", 0, 80.0), ("kd", 1, 80.0), ("ce", 0, 80.0)])
    done = withdraw("digits", "small", "recipe changed", rows=["kd"], seeds=[1], results=tmp_path / "res",
                    root=tmp_path / "runs", echo=lambda m: None)
    assert done == ["kd seed 1"]
    live = [(r["method"], r["seed"]) for r in read_rows(tmp_path / "res" / "digits.csv")]
    assert live == [("kd", "0"), ("ce", "0")]
    kept = read_csv(tmp_path / "res" / "withdrawn" / "digits.csv")
    assert [(r["method"], r["seed"], r["top1_last"], r["withdrawn_because"]) for r in kept] == [
        ("kd", "1", "91.0000", "recipe changed")]
    # the folder left the suite (else the bench would record its old summary again) and is kept
    assert not (tmp_path / "runs" / "digits" / "kd-s1").exists()
    (moved,) = (tmp_path / "runs" / "withdrawn" / "digits").glob("kd-s1-*")
    assert (moved / "summary.json").exists()
    assert "| kd | 1 |" in (tmp_path / "res" / "digits.md").read_text()  # the table was rewritten


def test_bench_withdraw_older_teacher_takes_only_runs_of_a_replaced_teacher(tmp_path):
    import json

    from kdforge.bench.accuracy import AccuracyBench
    from kdforge.bench.suites import SUITES
    from kdforge.bench.withdraw import withdraw

    bench = AccuracyBench(SUITES.get("digits"), "small", tmp_path / "runs", tmp_path / "res", echo=lambda m: None)
    _, teacher_folder = bench.teacher_config(None)
    teacher_folder.mkdir(parents=True)
    (teacher_folder / "summary.json").write_text(json.dumps({"top1_last": 90.0}))
    _recorded_digits_suite(tmp_path, [("kd", 0, 85.0), ("kd", 1, 90.0), ("ce", 0, 85.0)])
    done = withdraw("digits", "small", "teacher retrained", older_teacher=True, results=tmp_path / "res",
                    root=tmp_path / "runs", echo=lambda m: None)
    assert done == ["kd seed 0"]  # ce uses no teacher; kd seed 1 has today's
    assert withdraw("digits", "small", "again", older_teacher=True, results=tmp_path / "res", root=tmp_path / "runs",
                    echo=lambda m: None) == []


def test_bench_withdraw_refuses_an_unknown_row_or_no_reason_in_one_line_with_exit_2(tmp_path, capsys):
    from kdforge.cli import main

    _recorded_digits_suite(tmp_path, [("kd", 0, 80.0)])
    before = (tmp_path / "res" / "digits.csv").read_text()
    common = ["bench", "withdraw", "digits", "--results", str(tmp_path / "res"), "--root", str(tmp_path / "runs")]
    assert main(common + ["--rows", "nope", "--reason", "x"]) == 2
    assert main(common + ["--rows", "kd", "--reason", " "]) == 2
    assert main(common + ["--seeds", "a", "--reason", "x"]) == 2
    assert main(common + ["--reason", "x"]) == 2  # nothing named: the whole suite is never the default
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and "no row nope" in err[0] and "--reason" in err[1] and "--seeds" in err[2]
    assert "name what to withdraw" in err[3]
    assert (tmp_path / "res" / "digits.csv").read_text() == before and (tmp_path / "runs" / "digits" / "kd-s0").exists()


def test_a_stored_teacher_is_restored_on_a_new_machine_and_distils_exactly_as_the_one_trained(tmp_path, capsys):
    import shutil

    import torch

    from kdforge.cli import main
    from kdforge.engine.checkpoint import LATEST, load_weights, read_checkpoint

    first, second = tmp_path / "first", tmp_path / "second"
    args = dict(seeds=1, methods=["kd"], threads=1)
    run_accuracy("digits", root=str(first / "runs"), results=str(first / "res"), echo=lambda m: None, **args)
    [trained] = list((first / "runs" / "teachers").iterdir())
    stored = first / "res" / "teachers" / trained.name  # stored when it was trained
    kept = read_checkpoint(stored / LATEST)
    assert "optimizer" not in kept and "rng" not in kept and (stored / "summary.json").exists()
    # a new machine: no run folders, the results (and their store) as committed
    shutil.copytree(stored, second / "res" / "teachers" / trained.name)
    messages = []
    run_accuracy("digits", root=str(second / "runs"), results=str(second / "res"), echo=messages.append, **args)
    assert any("teacher restored" in m for m in messages) and not any("teacher ->" in m for m in messages)
    restored = second / "runs" / "teachers" / trained.name
    for name, tensor in load_weights(trained)[0].items():
        assert torch.equal(tensor, load_weights(restored)[0][name])
    assert read_rows(second / "res" / "digits.csv")[0]["top1_last"] == read_rows(first / "res" / "digits.csv")[0]["top1_last"]
    # a teacher trained before the store existed is kept on request; an unfinished one is a one-line error
    shutil.rmtree(first / "res" / "teachers")
    assert main(["bench", "teacher", "digits", "--root", str(first / "runs"), "--results", str(first / "res"),
                 "--no-train", "--store"]) == 0
    assert (stored / LATEST).exists()
    (trained / "summary.json").unlink()
    from kdforge.bench.teacher_store import store_teacher
    from kdforge.errors import UserError

    with pytest.raises(UserError, match="no finished teacher"):
        store_teacher(trained, first / "res")


def test_adopt_takes_runs_from_a_sweeps_ledger_on_a_machine_without_their_folders(tmp_path):
    import shutil

    from kdforge.cli import main
    from kdforge.sweep import Ledger, finished_run

    runs = tmp_path / "runs"
    run_accuracy("digits", seeds=1, methods=["kd"], root=str(runs), results=str(tmp_path / "a"), threads=1,
                 echo=lambda m: None)
    ledger = Ledger(tmp_path / "sweeps" / "kd.runs.jsonl")
    ledger.add({"seed": 0}, finished_run(runs / "digits" / "kd-s0"), None)
    shutil.rmtree(runs / "digits")  # the machine that trained it is gone; its teacher is still here
    assert main(["bench", "adopt", str(ledger.path), "digits", "--root", str(runs), "--results",
                 str(tmp_path / "b")]) == 0
    [trained] = read_rows(tmp_path / "a" / "digits.csv")
    [adopted] = read_rows(tmp_path / "b" / "digits.csv")
    assert adopted == trained and adopted["epoch_to_90"]  # the curve came with it
    assert not (runs / "digits" / "kd-s0" / "checkpoint.pt").exists()  # weights are not invented
    # a row recorded before its curve was kept (here: the kept curves lost) gets it from the ledger, once
    kept = tmp_path / "b" / "digits.curves.jsonl"
    assert len(kept.read_text().splitlines()) == 1
    kept.unlink()
    args = ["bench", "adopt", str(ledger.path), "digits", "--root", str(runs), "--results", str(tmp_path / "b")]
    assert main(args) == 0 and main(args) == 0
    [curve] = kept.read_text().splitlines()
    assert '"method": "kd"' in curve and len(read_rows(tmp_path / "b" / "digits.csv")) == 1


def test_bench_reproduce_trains_a_recorded_run_again_into_its_lost_folder_and_finds_it_identical(tmp_path, capsys):
    import shutil

    from kdforge.cli import main

    runs, res = tmp_path / "runs", tmp_path / "res"
    run_accuracy("digits", seeds=1, methods=["kd"], root=str(runs), results=str(res), threads=1, echo=lambda m: None)
    table = (res / "digits.csv").read_text()
    shutil.rmtree(runs / "digits")  # a new machine: the table (and the stored teacher) are all that is left
    shutil.rmtree(runs / "teachers")
    common = ["--root", str(runs), "--results", str(res)]
    assert main(["bench", "reproduce", "digits", "--rows", "kd", "--seeds", "0", *common]) == 0
    out = capsys.readouterr().out
    assert "identical, 1 thread(s)" in out and (runs / "digits" / "kd-s0" / "checkpoint.pt").exists()
    assert (res / "digits.csv").read_text() == table  # the table is never changed
    assert main(["bench", "reproduce", "digits", "--rows", "kd", "--seeds", "1", *common]) == 2
    assert "no recorded kd seed 1" in capsys.readouterr().err


def test_evidence_script_refuses_an_unknown_step_before_running_any(tmp_path):
    """The campaign's one command checks every step's name first: a typo in the third step must not start the
    first two (hours of runs) before failing."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "evidence.sh"
    done = subprocess.run(["bash", str(script), "claims", "detection", "clams"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "bench/evidence.sh: unknown step 'clams'; steps: claims baselines detection compile speed selection claims2 "
        "rest kr gkd"]
    assert "===" not in done.stdout and not any(tmp_path.iterdir())


def test_refilled_protocols_keep_what_they_read_when_run_folders_are_gone(tmp_path):
    """A reading on a machine without the run folders (a new one has no runs/) keeps every (student, seed) read
    before; only a run here that the JSON lacks is evaluated."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "refilled_protocols.py"
    spec = importlib.util.spec_from_file_location("refilled_protocols", path)
    protocols = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(protocols)
    earlier = tmp_path / "x-protocols.json"
    assert protocols.recorded(earlier) == {"incremental": {}, "fewshot": {}}
    earlier.write_text(json.dumps({"incremental": {"refilled": {"0": {"all": 70.0}}},
                                   "fewshot": {"ce-student": {"1": {"1-shot": {"mean": 50.0}}}}}))
    read = protocols.recorded(earlier)
    assert read["incremental"]["refilled"] == {0: {"all": 70.0}} and 1 in read["fewshot"]["ce-student"]
    here = {"refilled": {0: tmp_path / "r0", 2: tmp_path / "r2"}, "rkd": {}}
    assert protocols.unread(here, read["incremental"]) == [("refilled", 2, tmp_path / "r2")]


def test_refilled_protocols_read_the_incremental_reference_from_the_table_where_its_folder_is_gone(tmp_path):
    import importlib.util
    from pathlib import Path

    from kdforge.bench.accuracy import append_row

    path = Path(__file__).resolve().parents[1] / "bench" / "refilled_protocols.py"
    spec = importlib.util.spec_from_file_location("refilled_protocols", path)
    protocols = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(protocols)
    table = tmp_path / "suite.csv"
    for method, seed, top1 in (("same/ce", 0, 73.1), ("same/ce", 1, 74.0), ("same/ce", 3, 70.0), ("same/kd", 0, 76.0)):
        append_row(table, {"method": method, "seed": seed, "top1_last": top1, "top1_best": top1, "epochs": 240,
                           "wall_seconds": 1.0, "images_per_second": 1.0, "teacher_top1": 75.0})
    assert protocols.ce_from_table(table, 3) == {0: {"all": 73.1}, 1: {"all": 74.0}}  # seed 3 is past --seeds
    assert protocols._mean({}) == "–"


def test_results_page_speed_section_reads_the_suite_wall_time_record(tmp_path):
    import json

    from kdforge.bench.suites import SUITES
    from kdforge.methods import METHODS

    res = tmp_path / "results"
    res.mkdir()
    side = lambda s, top1: {"wall_seconds": s, "top1_last": top1}  # noqa: E731
    (res / "suite_speed.json").write_text(json.dumps({
        "suite": "cifar10-cpu", "budget": "small", "seed": 0, "threads": 2, "new_defaults": ["amp=auto"],
        "old_defaults": ["compile=false", "teacher_cache=false"], "rows_done": 2,
        "rows": {"ce": {"new": side(100.0, 73.0), "old": side(300.0, 72.4), "recorded_spread": [71.9, 72.5],
                        "new_within_spread": False},
                 "kd": {"new": side(1100.0, 74.0), "old": side(1700.0, 74.1), "recorded_spread": [73.5, 74.5],
                        "new_within_spread": True}},
        "wall_seconds": {"new": 1200.0, "old": 2000.0}, "ratio_new_to_old": 0.6}))
    page = write_results_page(res, tmp_path / "RESULTS.md").read_text()
    rows = len(SUITES.get("cifar10-cpu").variants(METHODS.names()))
    assert f"2 of {rows} rows measured; summed wall time 1,200 s vs 2,000 s (0.60×); new top-1 within the row's " \
           "recorded 3-seed spread for 1 of 2 (outside: ce) | `bench/suite_speed.py --threads 2` |" in page
    assert "defaults (set: amp=auto) vs the old (compile=false, teacher_cache=false)" in page


def test_suite_speed_refuses_a_second_sitting_on_the_same_root(tmp_path):
    import fcntl
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "suite_speed.py"
    root = tmp_path / "runs" / "suite-speed"
    root.mkdir(parents=True)
    with open(root / ".lock", "w") as held:  # a sitting already measuring there holds the root's run lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        second = subprocess.run([sys.executable, str(script), "--suite", "digits", "--methods", "kd", "--threads", "1",
                                 "--root", str(root), "--out", "speed.json"], cwd=tmp_path, capture_output=True,
                                text=True, timeout=120)
    assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1
    assert "another sitting is measuring" in second.stderr
    assert not (tmp_path / "speed.json").exists() and not (root / "cache").exists()
