"""The newcomer's main job end to end: `bash run/demo.sh` on the embedded sample, offline, CPU, tiny models."""
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from core import REPO_ROOT
from core import dataset


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    data, out = tmp_path / "sample", tmp_path / "demo"
    env = {**os.environ, "DEMO_DATA_DIR": str(data), "DEMO_OUT": str(out), "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(REPO_ROOT / "run" / "demo.sh")], env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "SMOKE=1" in run.stderr  # said loudly

    test_rows = dataset.read_info(data / "test" / "info.csv")
    for run_dir in ("method_1", "method_1_text", "method_2"):  # one banner per test row, named by bannerImage
        banners = sorted(p.name for p in (out / run_dir).glob("*.jpg"))
        assert banners == sorted(test_rows["bannerImage"]), run_dir
        for name in banners:
            with Image.open(out / run_dir / name) as im:
                assert (im.format, im.size) == ("JPEG", (1024, 533))
    assert "\x1b[" not in run.stdout + run.stderr  # no escape codes when the output is not a terminal
    assert "Loading weights" not in run.stderr and "Writing model shards" not in run.stderr

    report = json.loads((out / "val_method_1" / "report.json").read_text())
    val_rows = dataset.read_info(out / "val_split" / "test" / "info.csv")
    assert report["n"] == len(val_rows) == 3 and 0 < report["score"] < 1
    gallery = (out / "val_method_1" / "gallery.html").read_text(encoding="utf-8")
    assert all(name in gallery for name in val_rows["bannerImage"])
    method2 = json.loads((out / "val_method_2" / "report.json").read_text())
    assert method2["n"] == 3 and 0 < method2["score"] < 1
    assert "beside: val_method_1" in (out / "val_method_2" / "gallery.html").read_text(encoding="utf-8")
    assert "Method 2" in (out / "compare.csv").read_text()
