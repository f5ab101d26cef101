import subprocess
import sys

from conftest import REPO


def test_core_imports_with_torch_and_numpy_only():
    code = (
        "import sys, torch, numpy; before = set(sys.modules); "
        "import kdforge.losses, kdforge.methods, kdforge.models; "
        "heavy = {'torchvision', 'PIL', 'tensorboard', 'matplotlib', 'sklearn', 'yaml', 'tqdm', 'safetensors'}; "
        "print(sorted(m for m in heavy if m in sys.modules and m not in before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_ci_runs_make_test_and_the_readme_starts_with_the_two_commands():
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make demo", "make test"]
