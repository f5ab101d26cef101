"""The long fault battery: every bad-input case through the real CLI, SIGKILL at random moments of a
short run followed by resume, SIGTERM mid-epoch, a simulated full disk, two runs on one folder, and the
time the fast battery (tests/test_faults.py) adds to `make test`.

    .venv/bin/python bench/fault_battery.py [--kills 5] [--seed 0] [--out results/fault_battery.json]

Counts printed at the end: cases tried, cases answered with exit 2 and one line, files left torn (a
checkpoint failing its checksum or a JSON file that does not parse; must be 0), and resumed runs whose
final weights differ from the uninterrupted run (must be 0).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import torch  # noqa: E402

from kdforge.engine.checkpoint import read_checkpoint  # noqa: E402
from kdforge.fileio import atomic_write_json  # noqa: E402


def _fault_cases():
    """tests/fault_cases.py, the catalogue the test suite runs too, loaded by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fault_cases", REPO / "tests" / "fault_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_cases = _fault_cases()
CASES, stale_temporaries, torn_files = _cases.CASES, _cases.stale_temporaries, _cases.torn_files

RUN = ["digits-teacher", "epochs=3", "data.batch_size=32", "checkpoint_every=5", "deterministic=true", "threads=1",
       "tensorboard=false", "log_every=5"]


def kdforge(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdforge", *args], capture_output=True, text=True, timeout=600, **kw)


def weights(folder: Path) -> dict:
    return read_checkpoint(folder / "checkpoint.pt")["model"]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def bad_inputs(scratch: Path) -> dict:
    tried = answered = torn = 0
    failures = []
    for i, (name, area, build, needle) in enumerate(CASES):
        folder = scratch / f"case{i}"
        folder.mkdir()
        result = kdforge(*build(folder))
        tried += 1
        lines = result.stderr.strip().splitlines()
        ok = (result.returncode == 2 and len(lines) == 1 and lines[0].startswith("kdforge: error:")
              and needle in lines[0] and "Traceback" not in result.stderr)
        answered += ok
        if not ok:
            failures.append({"case": name, "code": result.returncode, "stderr": result.stderr[-300:]})
        if (folder / "run").exists():
            torn += len(torn_files(folder / "run"))
    return {"tried": tried, "answered_exit2_one_line": answered, "torn": torn, "failures": failures}


def wait_for(path: Path, proc: subprocess.Popen) -> None:
    while not path.exists() and proc.poll() is None:
        time.sleep(0.02)


def interrupted_runs(scratch: Path, reference: dict, kills: int, rng: random.Random, training: float) -> dict:
    """Each run is signalled at a random moment of its training phase (after set-up, which writes config.json)."""
    results = []
    plans = [("SIGKILL", rng.uniform(0.05, 0.95) * training) for _ in range(kills)]
    plans.append(("SIGTERM", rng.uniform(0.3, 0.7) * training))
    for i, (signame, delay) in enumerate(plans):
        out = scratch / f"kill{i}"
        proc = subprocess.Popen([sys.executable, "-m", "kdforge", "train", *RUN, f"out={out}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(out / "config.json", proc)
        time.sleep(delay)
        proc.send_signal(getattr(signal, signame))
        proc.wait(timeout=600)
        torn = len(torn_files(out))
        temporaries = len(stale_temporaries(out))
        position = None
        if (out / "checkpoint.pt").exists():
            p = read_checkpoint(out / "checkpoint.pt")["progress"]
            position = f"epoch {p['epoch'] + 1}, batch {p['batch']}"
        resumed = kdforge("train", *RUN, f"out={out}", "--resume")
        identical = resumed.returncode == 0 and same(weights(out), reference)
        results.append({"signal": signame, "after_seconds": round(delay, 2), "exit_code": proc.returncode,
                        "resumed_from": position, "torn_after_kill": torn, "temporaries_after_kill": temporaries,
                        "temporaries_after_resume": len(stale_temporaries(out)), "resumed_identical": identical})
    return {"runs": results, "torn": sum(r["torn_after_kill"] for r in results),
            "mismatched": sum(not r["resumed_identical"] for r in results)}


def full_disk(scratch: Path) -> dict:
    out = scratch / "disk"
    proc = subprocess.Popen([sys.executable, "-m", "kdforge", "train", *RUN, f"out={out}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(out / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=600)
    before = (out / "checkpoint.pt").read_bytes()
    limit = len(before) // 2

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = kdforge("train", *RUN, f"out={out}", "--resume", preexec_fn=small_disk)
    last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    return {"exit_code": result.returncode, "message": last,
            "previous_checkpoint_intact": (out / "checkpoint.pt").read_bytes() == before,
            "torn": len(torn_files(out))}


def two_runs(scratch: Path) -> dict:
    out = scratch / "shared"
    first = subprocess.Popen([sys.executable, "-m", "kdforge", "train", *RUN, "epochs=50", f"out={out}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(out / "config.json", first)
    second = kdforge("train", *RUN, "epochs=50", f"out={out}", "--resume")
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=600)
    return {"second_exit_code": second.returncode, "message": second.stderr.strip(), "torn": len(torn_files(out))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/fault_battery.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="kdforge-faults-") as tmp:
        scratch = Path(tmp)
        straight = kdforge("train", *RUN, f"out={scratch / 'straight'}")
        assert straight.returncode == 0, straight.stderr
        summary = json.loads((scratch / "straight" / "summary.json").read_text())
        training = summary["train_seconds"]  # the phase the signals are aimed at
        reference = weights(scratch / "straight")
        report = {"bad_inputs": bad_inputs(scratch),
                  "interruptions": interrupted_runs(scratch, reference, args.kills, rng, training),
                  "full_disk": full_disk(scratch), "two_runs_one_folder": two_runs(scratch)}
    start = time.perf_counter()
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", str(REPO / "tests" / "test_faults.py")],
                           capture_output=True, text=True, cwd=REPO)
    report["fast_battery"] = {"seconds": round(time.perf_counter() - start, 1), "exit_code": tests.returncode,
                              "summary": tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else ""}
    b, k = report["bad_inputs"], report["interruptions"]
    report["counts"] = {
        "cases_tried": b["tried"], "answered_exit2_one_line": b["answered_exit2_one_line"],
        "files_left_torn": b["torn"] + k["torn"] + report["full_disk"]["torn"] + report["two_runs_one_folder"]["torn"],
        "resumed_runs": len(k["runs"]), "resumed_weights_differ": k["mismatched"],
        "temporaries_left_by_kills": sum(r["temporaries_after_kill"] for r in k["runs"]),
        "temporaries_after_resume": sum(r["temporaries_after_resume"] for r in k["runs"]),
        "fast_battery_seconds": report["fast_battery"]["seconds"],
    }
    atomic_write_json(args.out, report)
    for key, value in report["counts"].items():
        print(f"{key:<26} {value}")
    print(f"full disk: exit {report['full_disk']['exit_code']}, previous checkpoint intact: "
          f"{report['full_disk']['previous_checkpoint_intact']}; two runs on one folder: exit "
          f"{report['two_runs_one_folder']['second_exit_code']}")
    for failure in b["failures"]:
        print(f"  NOT ANSWERED: {failure['case']} (exit {failure['code']})")
    print(f"-> {args.out}")
    ok = (b["answered_exit2_one_line"] == b["tried"] and report["counts"]["files_left_torn"] == 0
          and k["mismatched"] == 0 and report["full_disk"]["previous_checkpoint_intact"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
