"""`kdforge sweep`: every combination x seed runs once (resumable), the choice reads the validation split only, and
the table and the choice are written."""

import json

import pytest

from kdforge.errors import ConfigError
from kdforge.sweep import parse_cells, parse_grid, run_sweep

from conftest import run_cli

FAST = ["epochs=1", "threads=1", "tensorboard=false", "data.val_per_class=15"]


def test_grid_specs_parse_lists_and_refuse_bad_input():
    grid = parse_grid(["optim.lr=0.05,0.1", "optim.milestones=[60,80],[30,40]"])
    assert grid.keys == ("optim.lr", "optim.milestones")
    assert grid.values == (("0.05", "0.1"), ("[60,80]", "[30,40]")) and len(grid.combinations()) == 4
    for bad in ([], ["optim.lr"], ["optim.lr=0.1", "optim.lr=0.2"]):
        with pytest.raises(ConfigError):
            parse_grid(bad)


def test_sweep_chooses_the_best_validation_mean_and_resumes(tmp_path):
    lines = []
    args = ("digits-teacher", FAST, parse_grid(["optim.lr=0.0001,0.1"]), 2, "val", tmp_path / "runs",
            tmp_path / "out" / "lr")
    result = run_sweep(*args, echo=lines.append)
    assert len(result["runs"]) == 4 and "4 runs" in lines[0]
    means = {r["combination"]["optim.lr"]: r["val_mean"] for r in result["table"]}
    expected = max(means, key=means.get)
    assert result["chosen"] == {"optim.lr": expected} and means["0.1"] > means["0.0001"]  # a rate that learns
    for run in result["runs"]:  # each figure is that run's own validation top-1
        assert run["val"] == json.loads((tmp_path / "runs" / f"lr-{run['combination']['optim.lr']}-s{run['seed']}"
                                         / "summary.json").read_text())["val_top1_last"]
        assert run["train"] == json.loads((tmp_path / "runs" / f"lr-{run['combination']['optim.lr']}-s{run['seed']}"
                                           / "summary.json").read_text())["train_top1"]
    trains = {r["combination"]["optim.lr"]: r["train_mean"] for r in result["table"]}
    assert trains["0.1"] == pytest.approx(sum(r["train"] for r in result["runs"]
                                              if r["combination"]["optim.lr"] == "0.1") / 2)
    md = (tmp_path / "out" / "lr.md").read_text()
    assert "**chosen**" in md and "never used" in md and f"| {trains['0.1']:.2f} |" in md
    # the second cell's test top-1 minus the first's, paired by seed: mean and a t-interval on 1 degree of freedom
    test = {(r["combination"]["optim.lr"], r["seed"]): r["test"] for r in result["runs"]}
    diffs = [test["0.1", s] - test["0.0001", s] for s in (0, 1)]
    mean, half = sum(diffs) / 2, 12.706 * abs(diffs[0] - diffs[1]) / 2 ** 0.5 / 2 ** 0.5
    assert "| test − lr-0.0001 (paired by seed, 95 %) |" in md
    assert f"| {mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] |" in md and "| – |" in md
    assert json.loads((tmp_path / "out" / "lr.json").read_text())["chosen"] == result["chosen"]
    lines.clear()
    run_sweep(*args, echo=lines.append)  # everything done: nothing retrains
    assert sum("done before" in line for line in lines) == 4


def test_sweep_refuses_the_test_split_and_configs_without_validation(tmp_path):
    grid = parse_grid(["optim.lr=0.1"])
    with pytest.raises(ConfigError, match="validation split only"):
        run_sweep("digits-teacher", FAST, grid, 1, "test", tmp_path, tmp_path / "o")
    with pytest.raises(ConfigError, match="data.val_per_class"):
        run_sweep("digits-teacher", ["epochs=1"], grid, 1, "val", tmp_path, tmp_path / "o")
    result = run_cli("sweep", "digits-teacher", "epochs=1", "--grid", "optim.lr=0.1", "--select-on", "test",
                     cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "validation split only" in result.stderr
    result = run_cli("sweep", "digits-teacher", "--grid", "optim.lr=0.1", "--cell", "", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "do not mix" in result.stderr


def test_a_config_without_its_own_validation_split_is_swept_on_the_held_out_images_read_afterwards(tmp_path):
    from kdforge.bench.revalidate import validation_top1

    plain = ["epochs=1", "threads=1", "tensorboard=false", "data.train_per_class=60"]  # no data.val_per_class
    result = run_sweep("digits-teacher", plain, parse_grid(["optim.lr=0.1"]), 1, "val", tmp_path / "runs",
                       tmp_path / "out" / "lr", echo=lambda m: None, val_per_class=20)
    (run,) = result["runs"]
    assert run["val"] == validation_top1(tmp_path / "runs" / "lr-0.1-s0", 20)
    summary = json.loads((tmp_path / "runs" / "lr-0.1-s0" / "summary.json").read_text())
    assert summary.get("val_top1_last") is None  # the run trained without a split of its own


def test_lanes_share_a_sweep_by_seed_and_the_choice_waits_for_every_run(tmp_path):
    grid = parse_grid(["optim.lr=0.0001,0.1"])
    # 60 training images per class leave about 65 of digits' training split outside for validation
    args = ("digits-teacher", [*FAST, "data.train_per_class=60"], grid, 2, "val", tmp_path / "runs",
            tmp_path / "out" / "lr")
    lines = []
    assert run_sweep(*args, echo=lines.append, only_seeds=[1]) is None  # seed 0's runs are another lane's
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["lr-0.0001-s1", "lr-0.1-s1"]
    assert "2 of 4 runs not finished" in lines[-1] and not (tmp_path / "out" / "lr.json").exists()
    result = run_sweep(*args, echo=lambda m: None, only_seeds=[0], val_per_class=20)
    assert result is not None and len(result["runs"]) == 4
    # the larger validation split: each run's final weights on 20 images per class outside its training subset
    from kdforge.bench.revalidate import validation_top1

    for run in result["runs"]:
        assert run["val"] == validation_top1(tmp_path / "runs" / f"lr-{run['combination']['optim.lr']}-s{run['seed']}",
                                             20)
    assert "--val-per-class 20" in (tmp_path / "out" / "lr.md").read_text()
    with pytest.raises(ConfigError, match="outside 0..1"):
        run_sweep(*args, only_seeds=[2])


def test_cells_list_an_ablation_one_by_one_and_refuse_bad_input():
    grid = parse_cells(["", "fast: optim.lr=0.1", "optim.lr=0.05 optim.momentum=0"])
    assert grid.keys == ("optim.lr", "optim.momentum")
    assert grid.combinations() == [(None, None), ("0.1", None), ("0.05", "0")]  # None: the config's own value
    assert [grid.name(c) for c in grid.combinations()] == ["base", "fast", "lr-0.05_momentum-0"]
    assert grid.overrides(("0.1", None)) == ["optim.lr=0.1"]
    for bad in ([], ["optim.lr"], ["a: optim.lr=0.1", "a: optim.lr=0.2"], ["optim.lr=0.1", "optim.lr=0.1"],
                ["optim.lr=0.1 optim.lr=0.2"], ["a/b: optim.lr=0.1"]):
        with pytest.raises(ConfigError):
            parse_cells(bad)


def test_a_sweep_over_cells_trains_each_cell_as_named_and_leaves_the_rest_to_the_config(tmp_path):
    cells = parse_cells(["", "slow: optim.lr=0.0001"])
    result = run_sweep("digits-teacher", [*FAST, "optim.lr=0.1"], cells, 1, "val", tmp_path / "runs",
                       tmp_path / "out" / "ablation", echo=lambda m: None)
    lr = {p.name: json.loads((p / "config.json").read_text())["config"]["optim"]["lr"]
          for p in (tmp_path / "runs").iterdir()}
    assert lr == {"base-s0": 0.1, "slow-s0": 0.0001}
    for run in (tmp_path / "runs").iterdir():  # float32 on every machine, whatever amp=auto would pick
        assert json.loads((run / "summary.json").read_text())["amp"] is False
    assert [r["combination"] for r in result["table"]] == [{}, {"optim.lr": "0.0001"}]
    assert result["chosen"] == {} and result["chosen_name"] == "base"  # the rate that learns
    md = (tmp_path / "out" / "ablation.md").read_text()
    assert '--cell "slow: optim.lr=0.0001"' in md and "| base | - | 1 |" in md


def test_a_run_folder_is_a_config_its_settings_as_trained(tmp_path):
    from kdforge.config import load_config, to_dict
    from kdforge.engine.pipeline import train

    cfg = load_config("digits-teacher", [*FAST, f"out={tmp_path / 'run'}", "optim.lr=0.07"])
    train(cfg, echo=lambda m: None)
    again = load_config(str(tmp_path / "run"), ["seed=5"])
    assert again.optim.lr == 0.07 and again.seed == 5
    assert {k: v for k, v in to_dict(again).items() if k != "seed"} == \
        {k: v for k, v in to_dict(cfg).items() if k != "seed"}
    with pytest.raises(ConfigError, match="without a run's config.json"):
        load_config(str(tmp_path))


def test_a_finished_run_with_other_settings_is_refused_and_another_sweeps_same_run_is_reused(tmp_path):
    first = run_sweep("digits-teacher", FAST, parse_grid(["optim.lr=0.1"]), 1, "val", tmp_path / "a",
                      tmp_path / "out" / "a", echo=lambda m: None)
    # the same folder asked for other shared settings: refused before anything trains, nothing silently reused
    with pytest.raises(ConfigError, match="other settings"):
        run_sweep("digits-teacher", [*FAST, "optim.weight_decay=0.01"], parse_grid(["optim.lr=0.1"]), 1, "val",
                  tmp_path / "a", tmp_path / "out" / "a", echo=lambda m: None)
    lines = []
    second = run_sweep("digits-teacher", FAST, parse_grid(["optim.lr=0.1,0.0001"]), 1, "val", tmp_path / "b",
                       tmp_path / "out" / "b", echo=lines.append, reuse=[tmp_path / "a"])
    assert sum("copied" in line for line in lines) == 1 and sum("trained" in line for line in lines) == 1
    reused = {r["combination"]["optim.lr"]: r["val"] for r in second["runs"]}
    assert reused["0.1"] == first["runs"][0]["val"]
    assert (tmp_path / "b" / "lr-0.1-s0" / "metrics.jsonl").exists()


def test_a_sweep_resumes_on_a_new_machine_from_its_ledger_and_another_sweep_reuses_that_ledger(tmp_path):
    import shutil

    from kdforge.sweep import ledger_path

    grid = parse_grid(["optim.lr=0.0001,0.1"])
    out = tmp_path / "results" / "lr"
    first = run_sweep("digits-teacher", FAST, grid, 1, "val", tmp_path / "runs", out, echo=lambda m: None)
    records = [json.loads(line) for line in ledger_path(out).read_text().splitlines()]
    assert sorted(r["combination"]["optim.lr"] for r in records) == ["0.0001", "0.1"]
    shutil.rmtree(tmp_path / "runs")  # a new machine: the results (the ledger among them) are all that is left
    lines = []
    again = run_sweep("digits-teacher", FAST, grid, 1, "val", tmp_path / "runs", out, echo=lines.append)
    assert sum("recorded in" in line for line in lines) == 2 and not (tmp_path / "runs").exists()
    assert again["chosen"] == first["chosen"] and again["table"] == first["table"]
    # other trained settings are never taken from the ledger: a changed weight decay trains
    lines.clear()
    run_sweep("digits-teacher", [*FAST, "optim.weight_decay=0.01"], grid, 1, "val", tmp_path / "wd",
              tmp_path / "results" / "wd", echo=lines.append)
    assert sum("trained" in line for line in lines) == 2
    # a sweep re-reading cells of this one (an ablation's chosen cells) takes them from its ledger
    lines.clear()
    cells = parse_cells(["fast: optim.lr=0.1"])
    reread = run_sweep("digits-teacher", FAST, cells, 1, "val", tmp_path / "cells", tmp_path / "results" / "cells",
                       echo=lines.append, reuse=[ledger_path(out)])
    assert "recorded by another sweep" in lines[1] and not (tmp_path / "cells").exists()
    assert reread["runs"][0]["val"] == next(r["val"] for r in first["runs"] if r["combination"]["optim.lr"] == "0.1")


def test_a_sweep_with_an_end_starts_only_the_runs_its_recorded_runs_say_can_finish(tmp_path):
    from datetime import datetime, timedelta

    from kdforge.errors import SittingOver

    out = tmp_path / "results" / "lr"
    run_sweep("digits-teacher", FAST, parse_grid(["optim.lr=0.1"]), 1, "val", tmp_path / "runs", out,
              echo=lambda m: None)  # one run recorded: it times the rest
    grid, lines = parse_grid(["optim.lr=0.1,0.05"]), []
    with pytest.raises(SittingOver, match=r"^3 run\(s\) not started") as caught:
        run_sweep("digits-teacher", FAST, grid, 2, "val", tmp_path / "runs", out, echo=lines.append,
                  finish_by=datetime.now())
    assert "(lr-0.1 seed 1, lr-0.05 seed 0, lr-0.05 seed 1)" in str(caught.value)
    assert any("lr-0.1 seed 1: not started: it needs about" in line and "(the cell's slowest recorded run)" in line
               for line in lines)
    assert any("lr-0.05 seed 0: not started" in line and "(the sweep's slowest pace per epoch)" in line
               for line in lines)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["lr-0.1-s0"]  # nothing else started
    result = run_sweep("digits-teacher", FAST, grid, 2, "val", tmp_path / "runs", out, echo=lambda m: None,
                       finish_by=datetime.now() + timedelta(days=1))
    assert len(result["runs"]) == 4


def test_the_sweep_command_stops_with_exit_code_3_when_a_run_cannot_finish(tmp_path):
    root, out = tmp_path / "runs", tmp_path / "res" / "lr"
    common = ["sweep", "digits-teacher", *FAST, "--root", str(root), "--out", str(out)]
    assert run_cli(*common, "--grid", "optim.lr=0.1").returncode == 0
    done = run_cli(*common, "--grid", "optim.lr=0.1", "--seeds", "2", "--finish-by", "2026-01-01T00:00")
    err = done.stderr.strip().splitlines()
    assert done.returncode == 3 and err[-1].startswith("kdforge: 1 run(s) not started") and "lr-0.1 seed 1" in err[-1]
