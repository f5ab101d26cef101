import os
import sys
from pathlib import Path

import pytest
import torch

# Tests are sized for 2 shared CPU cores.
torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
# the real data beside the repository (CI's layout), passed explicitly: the library has no such path of its own
if "KDFORGE_DATA" not in os.environ and (REPO.parent / "shared" / "data").is_dir():
    os.environ["KDFORGE_DATA"] = str(REPO.parent / "shared" / "data")


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory):
    """Each test session (each xdist worker) gets its own kdforge cache, set before any fixture of any scope runs:
    a module's fixture that trained into the user's cache would replay teacher outputs an older kdforge recorded
    there; the real data folder stays reachable."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDFORGE_CACHE", str(tmp_path_factory.getbasetemp() / "kdforge-cache"))
        yield


@pytest.fixture(autouse=True, scope="session")
def repository_teacher_store_untouched():
    """Tests write their teachers under tmp_path, never into the repository's store of suite teachers (a test that
    forgot --results would commit a digits teacher); a bench lane finishing a teacher meanwhile shows up here too."""
    store = REPO / "results" / "teachers"
    before = set(store.iterdir()) if store.is_dir() else set()
    yield
    added = (set(store.iterdir()) if store.is_dir() else set()) - before
    assert not added, f"tests wrote into {store}: {sorted(p.name for p in added)}"


# tests that touch devices run on each one present: the CPU always, CUDA where there is one
DEVICES = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


def shared_data_dir() -> Path | None:
    for candidate in (REPO.parent / "shared" / "data", Path(os.environ.get("KDFORGE_DATA", "/nonexistent"))):
        if (candidate / "cifar10-jpeg.tar.gz").exists():
            return candidate
    return None


def run_cli(*args, cwd=None, timeout=600, env=None):
    import subprocess

    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "kdforge", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=full_env)
