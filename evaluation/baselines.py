"""
The baselines every method must beat, scored on a deterministic validation split of $DATA_DIR/train:

  (a) mean_color        a constant banner of the split's training mean colour (images.mean_color)
  (r) random_copy       a random training banner per row (seeds.row_seed), copied: what (b)'s retrieval must beat
  (b) retrieved_copy    the rank-1 retrieved training banner copied as is (runs `python -m retrieval.retrieve` on the
                        split, RETRIEVAL_ARGS passed on; RUN_RETRIEVAL=0 reads an existing test/retrieval.csv)
  (c) retrieved_pp      (b) through the shared post-processing (`python -m inference.postprocess`, the top-2
                        retrieved banners side by side)
  TEXT_LAYER=1          also (b) and (c) with the row's Vietnamese copy set on them (`python -m inference.text_layer`,
                        after the post-processing): retrieved_copy_text, retrieved_pp_text

    python -m evaluation.baselines --DATA_DIR=/work/shared/zac2023      (DATA_DIR as env var works too)

Writes each baseline's banners, report.json, scores.csv and gallery.html under OUT_ROOT/<name>/, and the table as
OUT_ROOT/baselines.md + .csv. Reruns rewrite the (cheap) copies and reuse cached features.
"""
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from core import REPO_ROOT, dataset, devices, files, images, knobs, seeds
from core.images import load_rgb, save_banner
from core.knobs import InputError
from core.progress import progress
from evaluation.compare import compare, to_markdown
from evaluation.evaluate import evaluate
from evaluation.make_split import make_split

DATA_DIR = "data"  # the dataset whose train/ is split (also from env DATA_DIR)
SPLIT_DIR = "data/val_split"  # where the validation split is written (DATA_DIR-style: train/, test/)
SEED = 0  # split seed
FRACTION = 0.1  # held-out share (0.1 of 1362 -> 136 rows)
OUT_ROOT = "outputs/baselines"  # one folder per baseline + baselines.md/.csv
CACHE_DIR = ".cache/features"  # Inception features and pixel metrics by content (shared with run/evaluate.sh)
RUN_RETRIEVAL = True  # run the retrieval stage on the split (False: use the split's existing test/retrieval.csv)
RETRIEVAL_ARGS = ""  # extra flags for `python -m retrieval.retrieve` on the split (e.g. an offline --TEXT_MODEL=folder)
POSTPROCESS_ARGS = ""  # extra flags for `python -m inference.postprocess` in baseline (c)
GALLERY = True  # write gallery.html for each baseline
TEXT_LAYER = False  # also score (b) and (c) with the row's copy set on them (inference.text_layer): *_text runs
TEXT_LAYER_ARGS = ""  # extra flags for `python -m inference.text_layer` (e.g. --DISCLAIMER=0)


def run_stage(module, args, data_dir):
    """Run another stage as its own process on `data_dir` (its knobs stay its own); fail loudly if it fails."""
    cmd = [sys.executable, "-m", module, *shlex.split(args)]
    print("running:", f"DATA_DIR={data_dir}", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, env={**os.environ, "DATA_DIR": str(data_dir)}, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise InputError(f"{module} failed (exit {result.returncode}) on DATA_DIR={data_dir}")


def mean_color_baseline(split, out_dir):
    train = dataset.read_info(split / "train" / "info.csv")
    rgb = images.mean_color(split / "train" / "images" / b for b in train["bannerImage"])
    print(f"(a) training mean colour over {len(train)} banners: RGB {tuple(round(c, 4) for c in rgb)}")
    from PIL import Image

    banner = Image.new("RGB", images.BANNER_SIZE, tuple(round(c * 255) for c in rgb))
    for name in dataset.read_info(split / "test" / "info.csv")["bannerImage"]:  # rewritten each run: cheap, never stale
        save_banner(banner, out_dir, name)


def copy_banner(src, out_dir, name):
    """The training banner as is: its bytes when it already is a 1024x533 JPEG, else converted to one."""
    dst = out_dir / name  # rewritten each run (cheap): a changed retrieval.csv must never leave an old copy behind
    if images.is_banner_jpeg(src):
        files.atomic_write(dst, Path(src).read_bytes())
    else:
        save_banner(load_rgb(src), out_dir, name)


def random_copy_baseline(split, out_dir, seed):
    """Each test row gets a training banner picked by its row seed: the floor that retrieval has to beat."""
    train = dataset.read_info(split / "train" / "info.csv")["bannerImage"].tolist()
    test = dataset.read_info(split / "test" / "info.csv")
    picks = [train[seeds.row_seed(seed, i) % len(train)] for i in test["id"]]
    for name, pick in zip(test["bannerImage"], picks):
        copy_banner(split / "train" / "images" / pick, out_dir, name)
    files.write_csv(out_dir / "manifest.csv", pd.DataFrame({"id": test["id"], "bannerImage": test["bannerImage"],
                                                             "init_bannerImage": picks}))


def retrieved_baseline(split, out_dir, rank):
    """Copy each test row's rank-`rank` retrieved training banner; a manifest names it for the gallery."""
    path = split / "test" / "retrieval.csv"
    test = dataset.read_info(split / "test" / "info.csv")
    picks = [names[rank - 1] for names in dataset.read_retrieval(path, test["id"], ranks=rank).values()]
    for row, pick in zip(progress(test.itertuples(), total=len(test), desc=f"copy rank-{rank}", unit="img"), picks):
        if not (split / "train" / "images" / pick).is_file():
            raise InputError(f"{path}: train_bannerImage {pick} (test id {row.id}) is not in {split / 'train'}")
        copy_banner(split / "train" / "images" / pick, out_dir, row.bannerImage)
    files.write_csv(out_dir / "manifest.csv", pd.DataFrame({"id": test["id"], "bannerImage": test["bannerImage"],
                                                             "init_bannerImage": picks}))


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    data = Path(cfg.DATA_DIR)
    split, out_root = Path(cfg.SPLIT_DIR), Path(cfg.OUT_ROOT)
    files.check_writable(out_root, "baselines folder", "--OUT_ROOT")
    train, test = make_split(data / "train", split, cfg.SEED, cfg.FRACTION, "symlink")
    print(f"validation split of {data / 'train'}: {len(train)} train + {len(test)} test rows in {split}")
    from evaluation.inception import InceptionFeatures

    extractor = InceptionFeatures(device=devices.pick_device())  # one model shared by every evaluation
    done, notes = [], []

    def score(name, beside=()):
        start = time.time()
        report = evaluate(out_root / name, split / "test", split / "train", cfg.CACHE_DIR, gallery=cfg.GALLERY,
                          extractor=extractor, beside=[out_root / b for b in beside])
        print(f"{name}: score {report['score']:.4f} in {time.time() - start:.1f} s ({report['timings_s']})")
        done.append(name)

    (out_root / "mean_color").mkdir(parents=True, exist_ok=True)
    mean_color_baseline(split, out_root / "mean_color")
    score("mean_color")
    (out_root / "random_copy").mkdir(parents=True, exist_ok=True)
    random_copy_baseline(split, out_root / "random_copy", cfg.SEED)
    score("random_copy")

    if cfg.RUN_RETRIEVAL:
        run_stage("retrieval.retrieve", cfg.RETRIEVAL_ARGS, split)
    else:
        notes.append(f"(b) used the existing {split / 'test' / 'retrieval.csv'} (RUN_RETRIEVAL=0)")
    for name, rank in (("retrieved_copy", 1), ("retrieved_copy_rank2", 2)):
        (out_root / name).mkdir(parents=True, exist_ok=True)
        retrieved_baseline(split, out_root / name, rank)
    score("retrieved_copy")
    run_stage("inference.postprocess", f"--IN_DIR={out_root / 'retrieved_copy'} --IN_DIR2="
              f"{out_root / 'retrieved_copy_rank2'} --OUT_DIR={out_root / 'retrieved_pp'} --CACHE_DIR={cfg.CACHE_DIR} "
              f"{cfg.POSTPROCESS_ARGS}", split)
    files.atomic_write(out_root / "retrieved_pp" / "manifest.csv",
                        (out_root / "retrieved_copy" / "manifest.csv").read_bytes())
    score("retrieved_pp")
    if cfg.TEXT_LAYER:  # the same banners with their copy on them, as a method would write them with TEXT_LAYER=1
        for name in ("retrieved_copy", "retrieved_pp"):
            run_stage("inference.text_layer", f"--IN_DIR={out_root / name} --INFO={split / 'test' / 'info.csv'} "
                      f"--OUT_DIR={out_root / (name + '_text')} {cfg.TEXT_LAYER_ARGS}", split)
            files.atomic_write(out_root / (name + "_text") / "manifest.csv",
                               (out_root / name / "manifest.csv").read_bytes())
            score(name + "_text", beside=[name])  # the gallery shows the banner without its copy beside it

    table = compare([out_root / n for n in done])
    markdown = to_markdown(table)
    print("\n" + markdown + "\n" + "\n".join(notes))
    files.atomic_write(out_root / "baselines.md", markdown + "\n\n" + "\n".join(notes) + "\n")
    files.write_csv(out_root / "baselines.csv", table)


if __name__ == "__main__":
    knobs.run_main(main)
