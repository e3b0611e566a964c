"""
Score a folder of predicted banners against the ground truth with the competitors' reconstruction of the Zalo AI 2023
score (lower is better; see evaluation/metrics.py), plus duplication against the training banners.

    bash run/evaluate.sh --PRED_DIR=<predictions> --GT_DIR=<folder with info.csv and images/>

Predictions are matched to ground-truth rows by bannerImage; a prediction counts only if it is a finished banner
(core.images.is_banner_jpeg: a complete 1024x533 JPEG, the same check as the generation stages' resume). Unusable ones
are named (the first few, the count, and the full list in REPORT_DIR) and fail the run. Written into REPORT_DIR
(default PRED_DIR), which is checked for writing before anything is scored:
- report.json: psnr_term, ssim_term, inception_term, fid_term, score, fid, duplication_mean, duplication_max, n, the
  rows over the guard and the competition's duplication levels (evaluation/duplication.py), timings; under 2048
  images a fid_note (FID's bias at small n: compare runs on the same split);
- scores.csv: one row per banner (PSNR, SSIM, Inception cosine, their terms, row_score whose mean is the score,
  duplication = max Inception cosine to any banner of TRAIN_DIR and which one, CLIP score when asked);
- gallery.html: every row with its text, init/retrieved banner, prediction, ground truth and numbers, sortable.
Inception features and pixel metrics are cached by file content in CACHE_DIR, so a rescore only computes what changed.
"""
import sys
import time
from pathlib import Path

import numpy as np

import models
from core import dataset, devices, files, images, knobs
from core.dataset import read_info
from core.errors import error_list
from core.files import JsonStore, content_hash, write_csv, write_json
from core.images import load_rgb
from core.knobs import InputError
from core.progress import progress
from evaluation import duplication, metrics
from evaluation.feature_cache import FeatureCache
from evaluation.inception import cosine, max_cosine

DATA_DIR = "data"  # the data folder (also from env DATA_DIR): its train/ is the default duplication pool
PRED_DIR = ""  # folder of predicted banners named by bannerImage
GT_DIR = ""  # ground truth: a folder with info.csv and images/ (e.g. data/val_split/test from evaluation.make_split)
REPORT_DIR = ""  # where report.json, scores.csv and gallery.html go; "" = PRED_DIR
TRAIN_DIR = ""  # duplication pool, a folder with images/ ("" = $DATA_DIR/train; "none" skips duplication)
CACHE_DIR = ".cache/features"  # Inception features + pixel metrics keyed by file content: rescoring is fast
GALLERY = True  # write gallery.html
BESIDE_DIRS = ()  # gallery: other prediction folders shown next to each prediction (--BESIDE_DIRS=a,b: another method, the run without TEXT_LAYER)
THUMB_WIDTH = 384  # gallery image width in px as embedded (JPEG data URIs); the page scales them to the window
CLIP_SCORE = False  # also compute the CLIP score prompt <-> prediction (needs CLIP_MODEL's weights; SMOKE=1: tiny model)
CLIP_MODEL = models.CLIP  # open_clip model: hub repo id[@revision] or local folder
DEVICE = "auto"  # auto | cpu | cuda (Inception and CLIP)


# names the metric implementations in the cache key: a change of PSNR/SSIM must never reuse old values
_METRICS_VERSION = "psnr-rgb255/ssim-gauss11-s1.5-rgb-f64/v1"


def check_predictions(gt_info, pred_dir, report_dir):
    """Paths of the predictions in row order. Every unusable one (core.images.is_banner_jpeg) is counted in one
    InputError that names the first few and writes the full list into report_dir."""
    paths = [Path(pred_dir) / b for b in gt_info["bannerImage"]]
    problems = [f"{p.name} ({why})" for p in paths if (why := images.banner_problem(p))]
    full_list = Path(report_dir) / "unusable_predictions.txt"
    full_list.unlink(missing_ok=True)  # a list from an earlier run must not outlive the problems it named
    if problems:
        listed = error_list(problems, full_list)
        raise InputError(f"{len(problems)} of {len(gt_info)} predictions in {pred_dir} are not usable: {listed}")
    return paths


def check_ground_truth_sizes(gt_info, gt_paths):
    """PSNR and SSIM compare pixel by pixel with a 1024x533 prediction: a ground truth of another size is refused
    naming its rows (read from the file headers, before any scoring)."""
    from PIL import Image

    wrong = []
    for row_id, path in zip(gt_info["id"], gt_paths):
        with Image.open(path) as im:
            if im.size != images.BANNER_SIZE:
                wrong.append(f"id={row_id} {path.name} {im.size[0]}x{im.size[1]}")
    if wrong:
        raise InputError(f"{len(wrong)} ground-truth banner(s) are not {images.BANNER_SIZE[0]}x{images.BANNER_SIZE[1]} "
                         f"(the size predictions are scored at): {error_list(wrong)}")


def pixel_metrics(pred_paths, gt_paths, store):
    """(psnr, ssim) per pair, memoised in `store` by the two files' contents."""
    out = []
    for pred, gt in progress(list(zip(pred_paths, gt_paths)), desc="psnr+ssim", unit="img"):
        key = f"{_METRICS_VERSION}:{content_hash(pred)}:{content_hash(gt)}"
        if key not in store:
            a, b = np.asarray(load_rgb(pred)), np.asarray(load_rgb(gt))
            store.put(key, [metrics.psnr(a, b), metrics.ssim(a, b)])
        out.append(store[key])
    store.save()
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def training_pool(train_dir):
    """(bannerImage names, paths) of the duplication pool: train_dir/info.csv's rows, else every image in images/."""
    train_dir = Path(train_dir)
    if (train_dir / "info.csv").is_file():
        names = read_info(train_dir / "info.csv", check_images=True)["bannerImage"].tolist()
    elif (train_dir / "images").is_dir():
        names = sorted(p.name for p in (train_dir / "images").iterdir() if not p.name.startswith("."))
    else:
        raise InputError(f"TRAIN_DIR {train_dir}: no info.csv or images/ (--TRAIN_DIR=none skips duplication)")
    if not names:
        raise InputError(f"TRAIN_DIR {train_dir}: no training banners")
    return names, [train_dir / "images" / n for n in names]


def clip_texts(gt_dir, gt_info):
    """The text CLIP reads: the English caption from info_trans.csv when the translation stage wrote one, else the raw one."""
    trans = Path(gt_dir) / "info_trans.csv"
    if trans.is_file():
        english = read_info(trans)
        by_id = dict(zip(english["id"], english["caption"]))
        return [by_id.get(i) or c for i, c in zip(gt_info["id"], gt_info["caption"])]
    print("CLIP score: no info_trans.csv in GT_DIR, so CLIP reads the Vietnamese captions (it knows English only): run "
          "bash run/translation.sh on the split for a meaningful CLIP score", file=sys.stderr)
    return gt_info["caption"].tolist()


def evaluate(pred_dir, gt_dir, train_dir=None, cache_dir=".cache/features", gallery=True, thumb_width=384,
             clip_model=None, device="auto", extractor=None, report_dir=None, beside=(), smoke=None):
    """Score pred_dir against gt_dir; writes report.json, scores.csv (and gallery.html) into report_dir (default
    pred_dir); returns the report.

    train_dir None/"none" skips duplication; clip_model None skips the CLIP score (`smoke`: the run's cfg.SMOKE, the
    tiny CLIP stand-in; required with clip_model, as every model load takes it); `extractor` lets a caller share one loaded InceptionFeatures across several evaluations.
    """
    start = time.time()
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not pred_dir.is_dir():
        raise InputError(f"PRED_DIR not found: {pred_dir}")
    missing_beside = [str(b) for b in beside if not Path(b).is_dir()]
    if missing_beside:
        raise InputError(f"BESIDE_DIRS: not a folder: {error_list(missing_beside)}")
    if clip_model and smoke is None:  # a caller's mistake, said before any scoring is paid for
        raise TypeError("evaluate(clip_model=...) needs smoke= (the run's cfg.SMOKE)")
    report_dir = files.check_writable(report_dir or pred_dir, "report folder", "--REPORT_DIR")  # before any scoring
    gt_info = read_info(gt_dir / "info.csv", check_images=True)
    gt_paths = [gt_dir / "images" / b for b in gt_info["bannerImage"]]
    check_ground_truth_sizes(gt_info, gt_paths)
    pred_paths = check_predictions(gt_info, pred_dir, report_dir)
    extra = {p.name for p in pred_dir.glob("*.jp*g")} - set(gt_info["bannerImage"])
    if extra:
        print(f"note: {len(extra)} image(s) in {pred_dir} have no ground-truth row and are ignored, e.g. "
              f"{sorted(extra)[:3]}", file=sys.stderr)

    cache_dir = Path(cache_dir)
    timings, tick = {}, time.time()

    def lap(name):  # seconds per phase, so the report shows where scoring time goes
        nonlocal tick
        timings[name] = round(time.time() - tick, 3)
        tick = time.time()

    if extractor is None and devices.pick_device(device) != "cpu":
        from evaluation.inception import InceptionFeatures

        extractor = InceptionFeatures(device=devices.pick_device(device))
    with JsonStore(cache_dir / "pixel_metrics.json", every=50) as store:
        pixels = pixel_metrics(pred_paths, gt_paths, store)
    lap("psnr_ssim")
    features = FeatureCache(cache_dir / "inception_features.safetensors", extractor)
    pred_feats = features.features(pred_paths, progress="inception: predictions")
    gt_feats = features.features(gt_paths, progress="inception: ground truth")
    lap("inception_pred_gt")

    rows = gt_info[["id", "bannerImage"]].copy()
    rows["psnr"], rows["ssim"] = pixels[:, 0], pixels[:, 1]
    rows["inception_cos"] = cosine(pred_feats, gt_feats)
    rows["psnr_term"] = [metrics.psnr_term(v) for v in rows["psnr"]]
    rows["ssim_term"] = [metrics.ssim_term(v) for v in rows["ssim"]]
    rows["inception_term"] = [metrics.inception_term(v) for v in rows["inception_cos"]]
    fid = metrics.fid(pred_feats, gt_feats)
    report = metrics.total_score(rows["psnr_term"], rows["ssim_term"], rows["inception_term"], fid)
    rows["row_score"] = 0.25 * (rows["psnr_term"] + rows["ssim_term"] + rows["inception_term"] + report["fid_term"])
    report.update(fid=fid, n=len(rows))
    if len(rows) < 2048:  # fewer images than feature dimensions: a rank-deficient covariance, and FID grows as n falls
        report["fid_note"] = (f"FID of {len(rows)} images is biased upward against larger sets (on real banners: 182 "
                              f"at n=136, 76 at n=681): compare runs on the same split, not with public scores")
    lap("fid")

    similarities = None
    if train_dir and str(train_dir).lower() != "none":
        names, train_paths = training_pool(train_dir)
        train_feats = features.features(train_paths, progress="inception: training pool",
                                        skip_hint="--TRAIN_DIR=none skips duplication")
        rows["duplication"], nearest = max_cosine(pred_feats, train_feats)
        rows["dup_train_bannerImage"] = [names[j] for j in nearest]
        gt_in_pool = {content_hash(p) for p in gt_paths} & {content_hash(p) for p in train_paths}
        if gt_in_pool:
            print(f"warning: TRAIN_DIR {train_dir} holds {len(gt_in_pool)} ground-truth banner(s): a perfect "
                  "prediction reads as a duplicate. Use the split's own train folder as the pool.")
        similarities = rows["duplication"].to_numpy()
    report.update(duplication.report_counts(similarities))
    lap("duplication")

    if clip_model:
        from evaluation.clip_score import ClipScorer

        scorer = ClipScorer(clip_model, device=devices.pick_device(device), smoke=smoke)
        rows["clip_score"] = scorer(pred_paths, clip_texts(gt_dir, gt_info))
        report.update(clip_score_mean=float(rows["clip_score"].mean()), clip_model=clip_model)
        lap("clip_score")

    finite = rows["psnr"][np.isfinite(rows["psnr"])]
    report.update(psnr_mean_finite=float(finite.mean()) if len(finite) else None, ssim_mean=float(rows["ssim"].mean()),
                  inception_cos_mean=float(rows["inception_cos"].mean()), pred_dir=str(pred_dir), gt_dir=str(gt_dir),
                  train_dir=str(train_dir) if train_dir else None, new_features_computed=features.new)
    write_csv(report_dir / "scores.csv", rows)
    if gallery:
        from evaluation.gallery import write_gallery

        write_gallery(report_dir / "gallery.html", rows, gt_info, pred_dir, gt_dir, train_dir, report, thumb_width,
                      beside)
        lap("gallery")
    report["timings_s"] = timings
    report["seconds"] = round(time.time() - start, 3)
    report["seconds_per_image"] = round(report["seconds"] / max(1, len(rows)), 4)
    write_json(report_dir / "report.json", report)
    return report


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    if not cfg.PRED_DIR or not cfg.GT_DIR:
        raise InputError("pass --PRED_DIR (predictions) and --GT_DIR (folder with info.csv and images/); see --help")
    knobs.announce_smoke("evaluate", cfg.SMOKE)
    train_dir = cfg.TRAIN_DIR or dataset.split_dir("train", cfg.DATA_DIR)
    report = evaluate(cfg.PRED_DIR, cfg.GT_DIR, train_dir, cfg.CACHE_DIR, cfg.GALLERY, cfg.THUMB_WIDTH,
                      cfg.CLIP_MODEL if cfg.CLIP_SCORE else None, cfg.DEVICE, report_dir=cfg.REPORT_DIR or None,
                      beside=cfg.BESIDE_DIRS, smoke=cfg.SMOKE)
    keys = ["score", "psnr_term", "ssim_term", "inception_term", "fid_term", "fid", "duplication_mean", "duplication_max",
            "n", "seconds_per_image"]
    print("  ".join(f"{k}={report[k]:.4f}" if isinstance(report[k], float) else f"{k}={report[k]}" for k in keys))
    if report.get("dup_over_guard") is not None:
        print(f"duplication: {report['dup_over_guard']} row(s) over the guard level {duplication.DUP_MAX}, "
              f"{report['dup_over_competition']} over the competition's estimated failing level "
              f"{duplication.COMPETITION_FAIL} (evaluation/duplication.py)")
    out = Path(cfg.REPORT_DIR or cfg.PRED_DIR)
    print(f"wrote {out / 'report.json'}, scores.csv" + (", gallery.html" if cfg.GALLERY else ""))


if __name__ == "__main__":
    knobs.run_main(main)
