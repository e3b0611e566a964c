"""Test-wide settings: never reach for the model hub (each accidental call retries ~47 s, then fails)."""
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# hermetic: the stages read DATA_DIR, OUT_DIR and SMOKE from the environment (the run/*.sh contract)
for name in ("DATA_DIR", "OUT_DIR", "SMOKE", "DEMO_DATA_DIR", "DEMO_OUT"):
    os.environ.pop(name, None)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import shutil  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "sample"))
from make_sample import make_sample  # noqa: E402


@pytest.fixture(scope="session")
def sample_master(tmp_path_factory):
    """The embedded sample (12 train rows + banners, 6 test rows), drawn once per test session. Read-only: copy it."""
    return make_sample(tmp_path_factory.mktemp("sample_master"))


@pytest.fixture
def sample_dir(sample_master, tmp_path):
    """A private, writable copy of the sample as a DATA_DIR (train/, test/)."""
    return Path(shutil.copytree(sample_master, tmp_path / "data"))


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one precision per process (AcceleratorState); a test of another one resets it around itself."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


@pytest.fixture
def lock_holder():
    """Start a process that takes FolderLock(folder, name) and keeps it until killed; yields a starter."""
    started = []

    def hold(folder, name=".lock"):
        code = ("import sys, time; from core import files; files.FolderLock(sys.argv[1], sys.argv[2]).__enter__(); "
                "print('held', flush=True); time.sleep(120)")
        proc = subprocess.Popen([sys.executable, "-c", code, str(folder), name], cwd=Path(__file__).resolve().parents[1],
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in started:
        proc.kill()
        proc.wait()
