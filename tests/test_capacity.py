"""KR's capacity claims: the gain over the baseline in each student, how it changes from the most capable student
to the least, and the epochs to 90 % of the final top-1 — against figures worked out by hand (t 95 %: 4.303 at two
degrees of freedom, 12.706 at one)."""

from kdforge.bench.capacity import capacity_lines, capacity_section
from kdforge.bench.suites import SUITES


def _rows(cell: str, method: str, top1: tuple, epochs: tuple) -> list[dict]:
    return [{"method": f"{cell}/{method}", "seed": str(s), "top1_last": str(t), "epoch_to_90": str(e)}
            for s, (t, e) in enumerate(zip(top1, epochs))]


ROWS = (_rows("big", "ce", (70.0, 71.0, 72.0), (100, 120, 110)) + _rows("big", "kr", (70.5, 71.4, 72.6), (80, 100, 100))
        + _rows("small", "ce", (60.0, 61.0, 62.0), ("", 100, 100))  # seed 0 predates the epoch column
        + _rows("small", "kr", (62.0, 63.5, 64.0), ("", 130, 150)))


def test_the_gain_per_student_and_its_change_as_capacity_falls_are_paired_by_seed():
    # gains: big 0.5, 0.4, 0.6 (mean 0.5, sd 0.1); small 2, 2.5, 2; small − big per seed 1.5, 2.1, 1.4
    # (mean 1.667, sd 0.3786: half-width 4.303 · 0.3786 / √3 = 0.941)
    # epochs: big −20, −20, −10 (mean −16.7, half-width 14.3); small +30, +50 on two seeds (half-width 127.1)
    assert capacity_lines(ROWS, ("big", "small"), claims=(("kr", "ce"),)) == [
        "- top-1, `kr` − `ce`: big +0.50 [+0.25, +0.75], small +2.17 [+1.45, +2.88]; small's gain − big's: "
        "+1.67 [+0.73, +2.61] (n=3): as capacity falls the gain **grows**",
        "- epochs to 90 % of the final top-1, `kr` − `ce`: big -17 [-31, -2] (**sooner**), small +40 [-87, +167] (ties)",
    ]


def test_a_student_without_runs_is_left_out_and_one_seed_gives_no_verdict():
    one_seed = [r for r in ROWS if r["seed"] == "1"]
    assert capacity_lines(one_seed, ("big", "medium", "small"), claims=(("kr", "ce"),)) == [
        "- top-1, `kr` − `ce`: big +0.40 (n=1), small +2.50 (n=1); small's gain − big's: +2.10 (one seed: no verdict)",
        "- epochs to 90 % of the final top-1, `kr` − `ce`: big -20 (one seed: no verdict), small +30 (one seed: no "
        "verdict)",
    ]
    assert capacity_lines(ROWS, ("big", "small"), claims=(("kr_kd", "kd"),)) == []


def test_only_the_capacity_suite_reads_its_cells_as_students():
    kr_suite = SUITES.get("cifar10-paper-kr-cpu")
    rows = [{**r, "method": r["method"].replace("big/", "resnet14/").replace("small/", "resnet8x0.5/")} for r in ROWS]
    section = capacity_section(kr_suite, rows)
    assert section[0].startswith("KR's claims by student capacity (resnet14 → resnet8 → resnet8x0.5, most capable")
    assert "resnet8x0.5's gain − resnet14's: +1.67 [+0.73, +2.61]" in section[2]
    assert capacity_section(SUITES.get("cifar10-paper-cpu"), rows) == []
    assert capacity_section(kr_suite, []) == []


def test_the_first_half_mean_reads_the_kept_curves_and_leaves_out_runs_without_one(tmp_path):
    import json

    from kdforge.bench.capacity import first_half_top1, kept_curves, with_first_half

    # 40 epochs: the first half holds the evaluations at epochs 10 and 20, not 30 or 40
    def curve(a: float, b: float) -> list[dict]:
        return [{"epoch": 10, "test_top1": a}, {"epoch": 20, "test_top1": b}, {"epoch": 30, "test_top1": 99.0},
                {"epoch": 40, "test_top1": 99.0}]

    assert first_half_top1(curve(50.0, 60.0), 40) == 55.0
    assert first_half_top1([{"epoch": 30, "test_top1": 1.0}], 40) is None
    # ce first halves 55, 60, 65; kr 54, 58, 66 (the per-seed differences -1, -2, +1: mean -0.67, sd 1.528,
    # half-width 4.303 · 1.528 / √3 = 3.80); seed 2 of big/kr was kept with another final, so it has no curve
    firsts = {("big/ce", 0): (50, 60), ("big/ce", 1): (55, 65), ("big/ce", 2): (60, 70),
              ("big/kr", 0): (50, 58), ("big/kr", 1): (54, 62), ("big/kr", 2): (61, 71)}
    rows = [{"method": m, "seed": str(s), "top1_last": "70.0", "epochs": "40"} for m, s in firsts]
    stale = {("big/kr", 2)}
    with open(tmp_path / "suite-e40.curves.jsonl", "w") as f:
        for (m, s), (a, b) in firsts.items():
            f.write(json.dumps({"method": m, "seed": s, "final": 71.0 if (m, s) in stale else 70.0,
                                "records": curve(a, b)}) + "\n")
    lines = capacity_lines(with_first_half(rows, kept_curves(tmp_path, "suite-e40")), ("big",), claims=(("kr", "ce"),))
    # seeds 0 and 1 only: -1, -2 (mean -1.5, sd 0.7071, half-width 12.706 · 0.7071 / √2 = 6.35)
    assert lines[-1] == "- mean test top-1 over the first half of the schedule, `kr` − `ce`: big -1.50 [-7.85, +4.85] (ties)"
    rows = [r for r in rows if (r["method"], int(r["seed"])) not in stale] + [
        {"method": "big/kr", "seed": "2", "top1_last": "71.0", "epochs": "40"}]
    lines = capacity_lines(with_first_half(rows, kept_curves(tmp_path, "suite-e40")), ("big",), claims=(("kr", "ce"),))
    assert lines[-1] == "- mean test top-1 over the first half of the schedule, `kr` − `ce`: big -0.67 [-4.46, +3.13] (ties)"
