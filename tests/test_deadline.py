"""`--finish-by`: a sitting with an end starts only the runs that can finish before it."""

import sys
from datetime import datetime, timedelta, timezone

import pytest

from kdforge.bench.accuracy import append_row, read_rows
from kdforge.bench.deadline import cell_rows, parse_finish_by, run_seconds, too_late
from kdforge.bench.suites import cell_of, method_of
from kdforge.errors import SittingOver, UserError

NOON = datetime(2026, 12, 2, 12, 0)


def test_finish_by_reads_the_next_time_a_clock_reads_or_an_iso_moment():
    assert parse_finish_by("14:30", now=NOON) == datetime(2026, 12, 2, 14, 30)
    # a clock time already past is the next day's: a sitting that starts late in the evening ends after midnight
    assert parse_finish_by("02:10", now=datetime(2026, 12, 2, 23, 45)) == datetime(2026, 12, 3, 2, 10)
    assert parse_finish_by("12:00", now=NOON) == datetime(2026, 12, 3, 12, 0)
    assert parse_finish_by("2026-12-03T01:15") == datetime(2026, 12, 3, 1, 15)
    aware = datetime(2026, 12, 2, 14, 30, tzinfo=timezone.utc)
    assert parse_finish_by(aware.isoformat()) == aware.astimezone().replace(tzinfo=None)  # local, naive
    for bad in ("soon", "25:00", "14h30"):
        with pytest.raises(UserError, match="--finish-by takes HH:MM"):
            parse_finish_by(bad, now=NOON)


def test_a_run_is_timed_by_its_rows_slowest_run_else_by_the_suites_slowest_pace():
    recorded = [{"method": "kd", "epochs": "30", "wall_seconds": "3000"},
                {"method": "kd", "epochs": "30", "wall_seconds": "3600"},
                {"method": "ce", "epochs": "10", "wall_seconds": "100"}]
    # kd: 120 s an epoch at its slowest, 20 of its 30 epochs left
    assert run_seconds(recorded, "kd", planned=30, trained=10) == (2400.0, "the row's slowest recorded run")
    # a row with no recorded run: the suite's slowest pace (kd's 120 s an epoch), not its median
    assert run_seconds(recorded, "vid", planned=5) == (600.0, "the suite's slowest pace per epoch")
    assert run_seconds(recorded, "kd", planned=30, trained=40) == (0.0, "the row's slowest recorded run")
    assert run_seconds([], "kd", planned=30) is None


def test_a_row_with_no_recorded_run_is_timed_by_its_cells_runs_before_the_suites():
    # cells are students of different sizes: a resnet14 row without runs must not take resnet8's pace
    recorded = [{"method": "resnet14/ce", "epochs": "240", "wall_seconds": "3120"},
                {"method": "resnet8/kr", "epochs": "240", "wall_seconds": "2400"},
                {"method": "resnet8/kd", "epochs": "240", "wall_seconds": "1200"}]
    assert (cell_of("resnet8/ce"), cell_of("kd")) == ("resnet8", "")
    assert (method_of("resnet8x0.5/kr_kd"), method_of("kd+logitstd")) == ("kr_kd", "kd+logitstd")
    assert cell_rows(recorded, "resnet8/ce") == recorded[1:]
    assert cell_rows(recorded, "kd") == []  # a row without a cell
    # resnet14/kd: its cell's one run, 13 s an epoch, 200 epochs left
    assert run_seconds(recorded, "resnet14/kd", planned=240, trained=40) == (2600.0, "the slowest pace per epoch of "
                                                                                    "resnet14")
    # resnet8/ce: its cell's slowest pace (kr's 10 s an epoch), not the suite's (resnet14's 13 s)
    assert run_seconds(recorded, "resnet8/ce", planned=240) == (2400.0, "the slowest pace per epoch of resnet8")
    # a cell with no run at all: the suite's slowest pace (resnet14's 13 s an epoch)
    assert run_seconds(recorded, "resnet8x0.5/ce", planned=10) == (130.0, "the suite's slowest pace per epoch")


def test_a_row_of_fewer_classes_is_timed_by_the_suites_pace_scaled_to_its_share():
    recorded = [{"method": "same/ce", "epochs": "240", "wall_seconds": "2400"},
                {"method": "disjoint/ce", "epochs": "240", "wall_seconds": "1500"}]
    share = {"same/ce": 1.0, "disjoint/ce": 0.5, "disjoint/rkd": 0.5, "overlap/ce": 0.6}.get
    # overlap (6 of 10 classes) has no run: the suite's slowest pace per class share is same/ce's 10 s an epoch
    # over all ten classes, 12.5 over disjoint's; 6 s or 7.5 s at its share, the slower taken
    assert run_seconds(recorded, "overlap/ce", planned=100, share=share) == (750.0, "the suite's slowest pace per "
                                                                                     "epoch")
    # a cell with runs of its own is timed by them unscaled (they train the same classes)
    assert run_seconds(recorded, "disjoint/rkd", planned=240, share=share)[0] == 1500.0
    assert run_seconds(recorded, "overlap/ce", planned=100)[0] == 1000.0  # without shares: the slowest, unscaled


def test_a_run_starts_only_when_it_fits_before_the_end():
    end = NOON + timedelta(minutes=50)
    assert too_late((2400.0, "x"), end, now=NOON) is None  # 40 min in 50
    late = too_late((3600.0, "the row's slowest recorded run"), end, now=NOON)
    assert late == ("not started: it needs about 60 min (the row's slowest recorded run) and the sitting ends at "
                    "12:50 (50 min left)")
    assert too_late(None, end, now=NOON) is None  # nothing to time it by: it starts
    assert "(0 min left)" in too_late((60.0, "x"), NOON, now=NOON + timedelta(minutes=5))


def _suite_with_a_slow_kd_run(tmp_path):
    (tmp_path / "res").mkdir()
    append_row(tmp_path / "res" / "digits.csv", {"method": "kd", "seed": 0, "top1_last": 90.0, "top1_best": 90.0,
                                                 "epochs": 30, "wall_seconds": 3600.0, "images_per_second": 1.0,
                                                 "teacher_top1": 95.0})


def test_a_suite_leaves_the_runs_that_cannot_finish_unstarted_and_says_so(tmp_path):
    from kdforge.bench.accuracy import AccuracyBench
    from kdforge.bench.suites import SUITES

    _suite_with_a_slow_kd_run(tmp_path)
    lines = []
    bench = AccuracyBench(SUITES.get("digits"), "small", tmp_path / "runs", tmp_path / "res", threads=1,
                          echo=lines.append)
    with pytest.raises(SittingOver, match=r"^3 run\(s\) not started, as they could not finish by") as caught:
        bench.run(seeds=2, methods=["kd", "ce"], finish_by=datetime.now() + timedelta(minutes=5))
    assert "(ce seed 0, kd seed 1, ce seed 1)" in str(caught.value) and caught.value.exit_code == 3
    assert len(read_rows(bench.csv)) == 1  # nothing recorded, nothing trained, not even the teacher
    assert not (tmp_path / "runs" / "digits").exists() and not (tmp_path / "runs" / "teachers").exists()
    assert any("ce seed 0: not started: it needs about 60 min (the suite's slowest pace per epoch)" in line
               for line in lines)
    # with the time it needs, the same call trains (ce: no teacher to wait for)
    bench.run(seeds=1, methods=["ce"], finish_by=datetime.now() + timedelta(days=1))
    assert [(r["method"], r["seed"]) for r in read_rows(bench.csv)] == [("kd", "0"), ("ce", "0")]


def test_the_command_stops_with_exit_code_3_and_one_line(tmp_path, capsys):
    from kdforge.cli import main

    _suite_with_a_slow_kd_run(tmp_path)
    code = main(["bench", "accuracy", "digits", "--methods", "kd", "--seeds", "2", "--root", str(tmp_path / "runs"),
                 "--results", str(tmp_path / "res"), "--threads", "1", "--finish-by", "2026-01-01T00:00"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and err[0].startswith("kdforge: 1 run(s) not started") and "kd seed 1" in err[0]
    assert main(["bench", "accuracy", "digits", "--finish-by", "whenever"]) == 2


def test_the_detection_suite_times_its_students_by_the_same_rule(tmp_path):
    from kdforge.bench.detection import _too_late
    from kdforge.config import load_config

    planned = load_config("detection-cpu-student", []).epochs
    table = tmp_path / "detection-cpu.csv"
    table.write_text(f"method,seed,epochs,wall_seconds\nkd,0,{planned},{planned * 60}\n")  # a minute an epoch
    folder = tmp_path / "kd-s1"
    enough = datetime.now() + timedelta(minutes=planned + 5)
    assert _too_late(table, "kd", folder, [], enough) is None
    assert "(the row's slowest recorded run)" in _too_late(table, "kd", folder, [], enough - timedelta(minutes=10))
    assert "(the suite's slowest pace per epoch)" in _too_late(table, "ckd", folder, [], datetime.now())


def test_a_campaign_resolves_its_clock_time_once_and_refuses_a_bad_one():
    """The campaign scripts turn FINISH_BY=HH:MM into one moment at their start: a command that starts after that
    moment must read it as passed, not as the next day's."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]

    def source(value: str):
        return subprocess.run(["bash", "-c", 'source bench/finish_by.sh; echo "[$FINISH_BY]"'], cwd=repo, text=True,
                              capture_output=True, timeout=60,
                              env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "FINISH_BY": value})

    done = source("2026-12-03T02:10")
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "[2026-12-03T02:10]"
    later = (datetime.now() + timedelta(hours=2)).strftime("%H:%M")  # past midnight, when the tests run late
    done = source(later)
    expected = parse_finish_by(later).isoformat(timespec="minutes")
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == f"[{expected}]"
    done = source("soon")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "FINISH_BY: --finish-by takes HH:MM or an ISO date-time such as 2026-12-02T14:30, " \
                                  "got 'soon'"
