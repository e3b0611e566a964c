"""
Method 1: retrieval-guided img2img. Each test row's banner is Stable Diffusion 1.5 (Realistic Vision V5.1 with the
sd-vae-ft-mse VAE) repainting the training banner that retrieval ranked first for it, prompted by the row's English
copy fitted to CLIP's 77 tokens (inference/prompts.py). A duplication guard regenerates, with more strength and a new
seed, any output whose Inception similarity to a training banner is above DUP_MAX.

reads   $DATA_DIR/test/info_trans.csv (INFO_FILE), $DATA_DIR/test/retrieval.csv (id, rank, train_bannerImage, ...),
        $DATA_DIR/train/info.csv + images/
writes  $OUT_DIR/<bannerImage>: exactly 1024x533 JPEG per test row (generated at GEN_SIZE, 1024x536)
        $OUT_DIR/manifest.csv: id, bannerImage, init_bannerImage, strength, seed, tries, dup_similarity, seconds,
        dup_nearest, prompt (one line per row; `seconds` = that row's share of its batches' wall time, retries included)
SUBMISSION=1: one run per seed of SEEDS into $SUBMISSION_DIR/submission{1,2}/ (banners only; manifests beside them as
        submission{k}_manifest.csv) plus time_submission{1,2}.csv
        (fname,time: seconds per image measured around its generation; a batch's time is split evenly over its images)
POSTPROCESS=1: the winner's recipe (inference/postprocess.py; knobs PP_*) on the generations from the rank-1 and rank-2
        retrieved banners.

Resumable: a rerun skips rows whose output is a valid 1024x533 image. Seeds are per row (and per try and per part),
so a row's image does not depend on batch size, order or the number of processes:
    accelerate launch -m inference.method1        # every GPU takes every world-th row; rank 0 merges the manifest
"""
import sys
import time
from pathlib import Path

from core import dataset, devices, files, images, knobs, seeds
from inference import postprocess, prompts

MODEL = "SG161222/Realistic_Vision_V5.1_noVAE"  # SD 1.5 checkpoint: hub id or local folder
VAE = "stabilityai/sd-vae-ft-mse"  # VAE loaded separately and passed in ("" = the checkpoint's own; unused with SMOKE=1)
SCHEDULER = "dpmpp"  # dpmpp (DPM-Solver++ multistep) | ddim | pndm | euler_a | default (the checkpoint's own)
STRENGTH = 0.6  # img2img strength: 0 returns the init banner, 1 ignores it (the seed's 0.6)
STEPS = 30  # scheduler steps; img2img runs int(STEPS * strength) of them
GUIDANCE = 7.5  # classifier-free guidance scale (> 1 doubles the UNet batch)
NEGATIVE_PROMPT = prompts.NEGATIVE_PROMPT  # what to steer away from ("" = none)
STYLE = ""  # words appended to every prompt when they fit (e.g. "advertising banner, high quality photo")
INFO_FILE = "info_trans.csv"  # test copy in English (translation stage); info.csv prompts with the Vietnamese text
RETRIEVAL_FILE = "retrieval.csv"  # in $DATA_DIR/test: id, rank, train_bannerImage (retrieval stage)
OUT_DIR = "inference/method_1"  # output folder (SUBMISSION=1 writes SUBMISSION_DIR/submission{k} instead)
GEN_SIZE = (1024, 536)  # generation size WxH, multiples of 8 (533 is not); outputs are resized to exactly 1024x533
BATCH_SIZE = 4  # images per pipeline call
VAE_SLICING = True  # decode a batch's latents one image at a time (less peak memory at 1024x536, same images)
SEED = 42  # run seed; each row's generator is seeded from (SEED, id)
DEVICE = "auto"  # auto | cuda | cpu (accelerate launch picks each process's GPU)
DTYPE = "fp16"  # fp16 | bf16 | fp32 on CUDA (always fp32 on the CPU)
DUP_GUARD = True  # measure each output's similarity to the training banners and regenerate near-copies
DUP_MAX = 0.85  # regenerate above this Inception cosine (distinct train banners: median 0.73, p90 0.78; a blurred copy 0.93)
DUP_STRENGTH_STEP = 0.1  # each retry adds this much strength (capped at 1.0)
DUP_MAX_TRIES = 3  # generations per row at most, the first included; after that the least similar one is kept
POSTPROCESS = False  # the winner's recipe: rank-1 and rank-2 generations side by side, blended, padded (knobs PP_*)
PP_PAIR = postprocess.PP_PAIR  # POSTPROCESS: two generations (rank-1 and rank-2 init banners) side by side
PP_BLEND_WEIGHT = postprocess.PP_BLEND_WEIGHT  # POSTPROCESS: 0..1 toward the training mean colour
PP_PAD = postprocess.PP_PAD  # POSTPROCESS: pad to the 1024:533 aspect with the mean colour
SUBMISSION = False  # competition layout: one run per seed of SEEDS, with time_submission{k}.csv
SEEDS = (42, 2023)  # SUBMISSION=1: the seeds of submission1 and submission2
SUBMISSION_DIR = "inference"  # SUBMISSION=1: parent of submission1/, submission2/ and the time CSVs
LIMIT = 0  # only the first LIMIT test rows (0 = all): quick looks
CACHE_DIR = ".cache/features"  # training statistics (Inception features, mean colour) by content; shared with evaluation
if knobs.smoke_enabled():  # tiny random model: few steps, small batches, small canvas (outputs still 1024x533)
    STEPS, BATCH_SIZE, GEN_SIZE = 3, 2, (256, 136)
knobs.configure(globals())
postprocess.PP_PAIR, postprocess.PP_BLEND_WEIGHT, postprocess.PP_PAD = PP_PAIR, PP_BLEND_WEIGHT, PP_PAD

SCHEDULERS = {"dpmpp": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
              "ddim": ("DDIMScheduler", {}), "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
              "euler_a": ("EulerAncestralDiscreteScheduler", {})}
_PIPES = {}  # loaded pipelines, reused by the two submission runs (and by tests)


# ---------------------------------------------------------------------------------------------------------------------
# inputs


def read_inputs(data_dir):
    """Test rows (with prompts' text), their init banners from retrieval.csv, checked; errors name the row."""
    test = dataset.split_dir("test", data_dir)
    info_path = test / INFO_FILE
    if not info_path.is_file():
        raise knobs.InputError(f"{info_path}: file not found (run bash run/translation.sh first, or pass "
                                f"--INFO_FILE=info.csv to prompt with the Vietnamese text)")
    info = dataset.read_info(info_path)
    if INFO_FILE != "info.csv" and (test / "info.csv").is_file():
        ids = set(dataset.read_info(test / "info.csv")["id"])
        stale = sorted(ids.symmetric_difference(info["id"]))
        if stale:
            raise knobs.InputError(f"{info_path}: ids differ from info.csv (e.g. id={stale[0]}): rerun translation")
    if LIMIT:
        info = info.head(LIMIT)
    parts = 2 if POSTPROCESS and postprocess.PP_PAIR else 1
    by_id = dataset.read_retrieval(test / RETRIEVAL_FILE, info["id"], ranks=parts)
    images = dataset.split_dir("train", data_dir) / "images"
    inits = []
    for row in info.itertuples():
        names = by_id[row.id]
        for name in names:
            images.check_image(images / name, f"init banner of test row id={row.id}")
        inits.append(names)
    return info, inits, images


# ---------------------------------------------------------------------------------------------------------------------
# the pipeline


def load_pipeline(device):
    from diffusers import AutoencoderKL, StableDiffusionImg2ImgPipeline

    dtype = devices.pick_dtype(device, DTYPE)
    key = (MODEL, VAE, SCHEDULER, str(device), str(dtype), knobs.smoke_enabled())
    if key in _PIPES:
        return _PIPES[key]
    extra = {}
    if VAE and not knobs.smoke_enabled():
        extra["vae"] = devices.load_model(AutoencoderKL.from_pretrained, VAE, dtype=dtype)
    pipe = devices.load_model(StableDiffusionImg2ImgPipeline.from_pretrained, MODEL, smoke_family="sd15",
                             dtype=dtype, safety_checker=None, requires_safety_checker=False, **extra)
    pipe = prepare_pipeline(pipe, device)
    _PIPES[key] = pipe
    return pipe


def prepare_pipeline(pipe, device):
    """The SCHEDULER knob, a tokenizer check, quiet progress, and a UNet call counter (the compute accounting)."""
    import diffusers

    if SCHEDULER != "default":
        if SCHEDULER not in SCHEDULERS:
            raise knobs.InputError(f"SCHEDULER={SCHEDULER!r}: choose from {', '.join(SCHEDULERS)} or default")
        cls, kwargs = SCHEDULERS[SCHEDULER]
        pipe.scheduler = getattr(diffusers, cls).from_config(pipe.scheduler.config, **kwargs)
    prompts.check_tokenizer(pipe.tokenizer, f"{MODEL} tokenizer")
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if VAE_SLICING:
        pipe.vae.enable_slicing()
    pipe.unet_calls = [0]  # images the UNet processed (a guidance pair counts 2): the compute accounting's ground truth
    pipe.unet.register_forward_pre_hook(lambda _m, args: pipe.unet_calls.__setitem__(0, pipe.unet_calls[0] + len(args[0])))
    return pipe


def try_strength(attempt):
    return min(1.0, STRENGTH + (attempt - 1) * DUP_STRENGTH_STEP)


def try_seed(seed, row_id, attempt, part):
    """The 63-bit seed of one generation: from (run seed, row id, try, part) only, never from batch or order."""
    run = seed if attempt == 1 else f"{seed}/try{attempt}"
    return seeds.row_seed(run, row_id if part == 0 else f"{row_id}#part{part + 1}")


def generate(pipe, jobs, strength):
    """jobs: [(prompt, init PIL image, seed)] -> ([PIL images], wall seconds), in calls of at most BATCH_SIZE."""
    import torch

    images, start = [], time.perf_counter()
    for i in range(0, len(jobs), BATCH_SIZE):
        chunk = jobs[i:i + BATCH_SIZE]
        images += pipe(prompt=[p for p, _, _ in chunk], negative_prompt=[NEGATIVE_PROMPT] * len(chunk),
                       image=[im for _, im, _ in chunk], strength=strength, num_inference_steps=STEPS,
                       guidance_scale=GUIDANCE,
                       generator=[torch.Generator("cpu").manual_seed(s) for _, _, s in chunk]).images
    return images, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------------------------------
# one run: every (sharded) row -> OUT_DIR/<bannerImage> + manifest


def is_done(path):
    if not images.is_valid_image(path):
        return False
    from PIL import Image

    with Image.open(path) as im:
        return im.size == images.BANNER_SIZE


def meta_path(out_dir, name):
    """Where a run's bookkeeping goes: inside OUT_DIR, but beside a submission folder (the grader reads every file in
    submission{k}/, which must hold banners only)."""
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}_{name}" if SUBMISSION else out_dir / name


def load_records(out_dir):
    """Manifest records of every process of every earlier run ({bannerImage: record}; the newest record wins)."""
    records = {}
    pattern = meta_path(out_dir, ".manifest.rank*.json")
    for path in sorted(pattern.parent.glob(pattern.name)):
        for name, rec in (files.read_json(path, {}) or {}).items():
            if name not in records or rec.get("finished", 0) > records[name].get("finished", 0):
                records[name] = rec
    return records


def training_stats(data_dir, device):
    """(duplication guard or None, training mean colour or None), from the on-disk cache after the first run."""
    guard = mean_rgb = None
    if DUP_GUARD or POSTPROCESS:
        from inference.train_pool import cached_mean_color, train_banners

        names, paths = train_banners(data_dir)
        if POSTPROCESS:
            mean_rgb = cached_mean_color(names, paths, CACHE_DIR)
        if DUP_GUARD:
            from inference.dup_guard import DupGuard

            guard = DupGuard(names, paths, CACHE_DIR, device=device)
    return guard, mean_rgb


def run_once(out_dir, seed, data_dir=None, rank=0, world=1, device=None):
    """Generate this process's share of the test rows into `out_dir`; returns this process's compute figures."""
    import torch
    from tqdm import tqdm

    if DUP_GUARD and DUP_MAX_TRIES < 1:
        raise knobs.InputError(f"DUP_MAX_TRIES={DUP_MAX_TRIES}: must be >= 1 (the first generation counts)")
    device = device or devices.pick_device(DEVICE)
    out_dir = Path(out_dir)
    info, inits, images_dir = read_inputs(data_dir)
    pipe = load_pipeline(device)
    count, budget = prompts.token_counter(pipe.tokenizer), prompts.window(pipe.tokenizer)
    guard, mean_rgb = training_stats(data_dir, device)
    rows = devices.shard(list(zip(info.itertuples(), inits)), rank, world)
    todo = [(row, init) for row, init in rows if not is_done(out_dir / row.bannerImage)]
    print(f"[rank {rank}/{world}] {len(rows)} rows, {len(rows) - len(todo)} already done, {len(todo)} to generate "
          f"into {out_dir} (seed {seed})", file=sys.stderr)
    store = files.JsonStore(meta_path(out_dir, f".manifest.rank{rank}.json"), every=1)
    calls_before, generated, started = pipe.unet_calls[0], 0, time.perf_counter()
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rows_per_batch = max(1, BATCH_SIZE // len(inits[0])) if inits else 1
    bar = tqdm(total=len(todo), desc=f"method 1 [rank {rank}]", unit="banner")
    for b in range(0, len(todo), rows_per_batch):
        batch = todo[b:b + rows_per_batch]
        prompt = {row.id: prompts.fit_prompt(row.caption, row.description, row.moreInfo, count, budget, STYLE)[0]
                  for row, _ in batch}
        init_images = {row.id: [images.load_rgb(images_dir / n).resize(tuple(GEN_SIZE)) for n in names]
                       for row, names in batch}
        best, tried, seconds, pending = {}, {}, {row.id: 0.0 for row, _ in batch}, list(batch)
        for attempt in range(1, DUP_MAX_TRIES + 1 if guard else 2):
            strength = try_strength(attempt)
            jobs = [(prompt[row.id], im, try_seed(seed, row.id, attempt, part))
                    for row, _ in pending for part, im in enumerate(init_images[row.id])]
            outs, wall = generate(pipe, jobs, strength)
            generated += len(jobs)
            per_part = len(jobs) // len(pending)
            finals = [outs[i * per_part:(i + 1) * per_part] for i in range(len(pending))]
            # the guard measures the banner exactly as it will be on disk (JPEG), as the evaluation will
            finals = [images.banner_jpeg(postprocess.compose(parts, mean_rgb) if POSTPROCESS else parts[0])
                      for parts in finals]
            t0 = time.perf_counter()
            sims, nearest = (guard.measure([images.decode_image(jpeg) for jpeg in finals]) if guard
                             else ([float("nan")] * len(finals), [""] * len(finals)))
            wall += time.perf_counter() - t0
            still = []
            for (row, names), image, sim, near in zip(pending, finals, sims, nearest):
                seconds[row.id] += wall / len(pending)
                tried[row.id] = attempt
                rec = {"image": image, "strength": strength, "seed": try_seed(seed, row.id, attempt, 0),
                       "tries": attempt, "dup_similarity": float(sim), "dup_nearest": near}
                if row.id not in best or sim < best[row.id]["dup_similarity"]:
                    best[row.id] = rec
                if guard and sim > DUP_MAX:
                    still.append((row, names))
            pending = still
            if not pending:
                break
        for row, names in batch:
            rec = best[row.id]
            jpeg = rec.pop("image")
            rec["tries"] = tried[row.id]  # generations made; strength and seed are those of the kept one
            # record first, then the image: a kill in between leaves a record whose row is redone, never a banner
            # without its record (which would leave its time_submission cell empty)
            store.put(row.bannerImage, {"id": row.id, "bannerImage": row.bannerImage,
                                        "init_bannerImage": ";".join(names), **rec, "seconds": seconds[row.id],
                                        "prompt": prompt[row.id], "finished": time.time()})
            images.save_banner(jpeg, out_dir, row.bannerImage)
        bar.update(len(batch))
    bar.close()
    store.save()
    elapsed = time.perf_counter() - started
    figures = {"rank": rank, "rows": len(todo), "generations": generated, "seconds": elapsed,
               "unet_images": pipe.unet_calls[0] - calls_before,
               "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if str(device).startswith("cuda") else None}
    print_compute(figures)
    return figures


def print_compute(f):
    n = max(1, f["rows"])
    per_call = int(STEPS * STRENGTH) * (2 if GUIDANCE > 1 else 1) * (2 if POSTPROCESS and postprocess.PP_PAIR else 1)
    print(f"[rank {f['rank']}] compute: {f['rows']} banners in {f['seconds']:.1f} s "
          f"({f['rows'] / f['seconds'] if f['seconds'] else 0:.3f} banners/s); UNet evaluations per banner "
          f"{f['unet_images'] / n:.1f} measured (first try alone: int({STEPS} steps x {STRENGTH} strength) x "
          f"{'2 (guidance)' if GUIDANCE > 1 else '1'}{' x 2 parts' if POSTPROCESS and postprocess.PP_PAIR else ''}"
          f" = {per_call}; retries add more); {f['generations']} generations"
          + (f"; peak GPU memory {f['peak_gpu_gib']:.2f} GiB" if f["peak_gpu_gib"] is not None else ""),
          file=sys.stderr)


def merge_manifest(out_dir, data_dir=None):
    """Rank 0, after every process finished: one manifest.csv for every test row, in info order."""
    import pandas as pd

    out_dir = Path(out_dir)
    info, _, _ = read_inputs(data_dir)
    records = load_records(out_dir)
    columns = ["id", "bannerImage", "init_bannerImage", "strength", "seed", "tries", "dup_similarity", "seconds",
               "dup_nearest", "prompt"]
    rows, missing = [], []
    for row in info.itertuples():
        if not is_done(out_dir / row.bannerImage):
            missing.append(row.id)
            continue
        rec = records.get(row.bannerImage) or {"id": row.id, "bannerImage": row.bannerImage}  # made outside this tool
        rows.append({c: rec.get(c, "") for c in columns})
    if missing:
        raise knobs.InputError(f"{out_dir}: no valid output for test row(s) id={missing[:10]}: rerun to finish them")
    manifest = pd.DataFrame(rows, columns=columns)
    files.write_csv(meta_path(out_dir, "manifest.csv"), manifest)
    sims = pd.to_numeric(manifest["dup_similarity"], errors="coerce").dropna()
    if len(sims):
        print(f"{out_dir}: {len(manifest)} banners; duplication similarity mean {sims.mean():.4f}, max "
              f"{sims.max():.4f} (nearest training banner, Inception cosine; DUP_MAX={DUP_MAX}); "
              f"{int((pd.to_numeric(manifest['tries'], errors='coerce') > 1).sum())} rows regenerated",
              file=sys.stderr)
    else:
        print(f"{out_dir}: {len(manifest)} banners (DUP_GUARD off: no similarity measured)", file=sys.stderr)
    return manifest


def write_times(manifest, path):
    """time_submission{k}.csv: fname,time (seconds per image)."""
    import pandas as pd

    times = pd.DataFrame({"fname": manifest["bannerImage"],
                          "time": pd.to_numeric(manifest["seconds"], errors="coerce").round(4)})
    files.write_csv(path, times)


def main():
    knobs.announce_smoke("inference / method 1")
    rank, world, device = devices.process_info()
    device = devices.pick_device(DEVICE) if world == 1 else device
    if rank == 0 and world > 1:  # one process fills the training-statistics cache; the others then read it
        training_stats(None, device)
    devices.wait_for_everyone()
    runs = ([(Path(SUBMISSION_DIR) / f"submission{k}", s) for k, s in enumerate(SEEDS, start=1)] if SUBMISSION
            else [(Path(OUT_DIR), SEED)])
    for out_dir, seed in runs:
        run_once(out_dir, seed, rank=rank, world=world, device=device)
        devices.wait_for_everyone()
        if rank == 0:
            manifest = merge_manifest(out_dir)
            if SUBMISSION:
                write_times(manifest, Path(SUBMISSION_DIR) / f"time_{out_dir.name}.csv")
        devices.wait_for_everyone()


if __name__ == "__main__":
    knobs.run_main(main)
