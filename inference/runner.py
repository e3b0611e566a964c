"""
The run machinery every generation method shares; a method brings only its inputs, its pipeline and its generate
function (inference/method1.py: img2img from the retrieved banner; inference/method2.py: text-to-image with a LoRA).

- Output folders: one OUT_DIR, or the submission layout: one run per seed into submission{k}/ (banners only: the grader
  reads every file there) with the bookkeeping beside it and time_submission{k}.csv (fname,time).
- Resume that cannot mix runs: a banner counts as done only when it is a valid 1024x533 JPEG (core.images.
  is_banner_jpeg, the one check every stage uses) AND its manifest record was made with the same settings and inputs
  (a hash over the method's settings, the row's prompt, its input banners and the seed). A banner made otherwise is
  refused with one line that names the settings that differ and how to overwrite (`--OVERWRITE=1`), never silently kept
  and never silently replaced (it may be paid work).
- The output folder is checked for writing before any model loads, and locked: a second run into a folder in use is
  refused with one line.
- Seeds: per row, per try and per part (`try_seed`), so a banner never depends on batch size, order or process count.
- The guarded loop: generate, finish (post-processing, text layer), encode as the JPEG that will be written, measure it
  against every training banner (duplication guard), and regenerate rows above the guard level with the method's retry
  policy (img2img raises strength; text-to-image changes only the seed), keeping the least similar try.
- Manifest: each process appends records to its own JSON file as rows finish (record first, then the banner: a kill in
  between redoes the row); rank 0 merges them into manifest.csv in info order.
"""
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core import devices, files, images, seeds
from core.knobs import InputError
from core.progress import progress
from evaluation import duplication
from inference import postprocess

# ---------------------------------------------------------------------------------------------------------------------
# the knobs of the run machinery, shared by both generation methods (each lists them in SHARED_KNOBS; --help shows
# them; a method's own constant of the same name wins)

OVERWRITE = False  # regenerate banners in OUT_DIR that were made with other settings (else: refused with one line)
BATCH_SIZE = 4  # images per pipeline call
VAE_SLICING = True  # decode a batch's latents one image at a time (less peak memory at 1024x536, same images)
COMPILE = False  # torch.compile the UNet (CUDA; the first batches compile, then each UNet call is faster)
CHANNELS_LAST = False  # UNet in channels_last memory format (measure with inference.benchmark before turning on)
SEED = 42  # run seed; each row's generator is seeded from (SEED, id)
DEVICE = "auto"  # auto | cuda | cpu (accelerate launch picks each process's GPU)
DTYPE = "fp16"  # fp16 | bf16 | fp32 on CUDA (always fp32 on the CPU)
DUP_GUARD = True  # measure each output's similarity to the training banners and regenerate near-copies
DUP_MAX = duplication.DUP_MAX  # regenerate above this Inception cosine (evaluation/duplication.py: why 0.85)
DUP_MAX_TRIES = 3  # generations per row at most, the first included; after that the least similar one is kept
POSTPROCESS = False  # the winner's recipe: two generations side by side, blended, padded (knobs PP_*)
PP_PAIR = postprocess.PP_PAIR  # POSTPROCESS: two generations side by side (Method 1: from the rank-1 and rank-2 banners)
PP_TILE_SIZE = postprocess.PP_TILE_SIZE  # POSTPROCESS: each image of the pair, WxH
PP_GAP = postprocess.PP_GAP  # POSTPROCESS: px between the two images
PP_BLEND_WEIGHT = postprocess.PP_BLEND_WEIGHT  # POSTPROCESS: 0..1 toward the training mean colour
PP_PAD = postprocess.PP_PAD  # POSTPROCESS: pad to the 1024:533 aspect with the mean colour
TEXT_LAYER = False  # set the row's Vietnamese copy on the final banner (inference/text_layer.py), after POSTPROCESS
SUBMISSION = False  # competition layout: one run per seed of SEEDS, with time_submission{k}.csv
SEEDS = (42, 2023)  # SUBMISSION=1: the seeds of submission1 and submission2
SUBMISSION_DIR = "inference"  # SUBMISSION=1: parent of submission1/, submission2/ and the time CSVs
LIMIT = 0  # only the first LIMIT test rows (0 = all): quick looks
CACHE_DIR = ".cache/features"  # training statistics (Inception features, mean colour) by content; shared with evaluation

MANIFEST_COLUMNS = ["id", "bannerImage", "init_bannerImage", "strength", "seed", "tries", "dup_similarity", "seconds",
                    "dup_nearest", "prompt"]


# ---------------------------------------------------------------------------------------------------------------------
# folders


@dataclass(frozen=True)
class RunTarget:
    """One run: its banner folder, its seed, and whether it is a submission folder (bookkeeping kept beside it)."""
    out_dir: Path
    seed: int
    submission: bool = False

    def meta(self, name):
        return self.out_dir.parent / f"{self.out_dir.name}_{name}" if self.submission else self.out_dir / name

    def times_csv(self):
        return self.out_dir.parent / f"time_{self.out_dir.name}.csv"


def run_targets(out_dir, seed, submission=False, submission_seeds=(), submission_dir="inference"):
    """The runs to make: [OUT_DIR with SEED], or one submission{k}/ per seed of `submission_seeds`."""
    if submission:
        if len(submission_seeds) < 1:
            raise InputError("SUBMISSION=1 needs at least one seed in SEEDS")
        return [RunTarget(Path(submission_dir) / f"submission{k}", int(s), True)
                for k, s in enumerate(submission_seeds, start=1)]
    return [RunTarget(Path(out_dir), int(seed))]


def prepare_targets(targets):
    """Before any model loads: every folder the runs will write is writable (one line if not)."""
    for target in targets:
        files.check_writable(target.out_dir)
        files.check_writable(target.meta("x").parent)


def read_test_rows(cfg):
    """The test rows a method generates, from $DATA_DIR/test/INFO_FILE (the English copy by default), checked against
    info.csv's ids, cut to LIMIT, every output name a plain .jpg/.jpeg; errors name the file and the row."""
    from core import dataset

    test = dataset.split_dir("test", cfg.DATA_DIR)
    info_path = test / cfg.INFO_FILE
    if not info_path.is_file():
        raise InputError(f"{info_path}: file not found (run bash run/translation.sh first, or pass "
                         f"--INFO_FILE=info.csv to prompt with the Vietnamese text)")
    info = dataset.read_info(info_path)
    if cfg.INFO_FILE != "info.csv" and (test / "info.csv").is_file():
        ids = set(dataset.read_info(test / "info.csv")["id"])
        stale = sorted(ids.symmetric_difference(info["id"]))
        if stale:
            raise InputError(f"{info_path}: ids differ from info.csv (e.g. id={stale[0]}): rerun translation")
    if cfg.LIMIT:
        info = info.head(cfg.LIMIT)
    rows = list(info.itertuples())
    check_names(rows)
    return rows


def parts(cfg):
    """Generations per banner: two for the post-processing's pair (Method 1: from the rank-1 and rank-2 banners;
    Method 2: two seeds), else one."""
    return 2 if cfg.POSTPROCESS and cfg.PP_PAIR else 1


# the shared knobs that decide what a banner looks like (each method adds its own): a banner made with other values is
# not this run's
SHARED_IMAGE_SETTINGS = ("DTYPE", "DUP_GUARD", "DUP_MAX", "DUP_MAX_TRIES", "POSTPROCESS", "PP_PAIR", "PP_TILE_SIZE",
                         "PP_GAP", "PP_BLEND_WEIGHT", "PP_PAD", "TEXT_LAYER")


def image_settings(cfg, own):
    """The settings in each banner's resume key: the method's `own` knobs and the shared ones. With TEXT_LAYER on, the
    text layer's whole recipe (its settings and the fonts' bytes) stands for it, so a new font or layer setting redoes
    the banners instead of keeping ones set the old way."""
    from inference import text_layer

    settings = {name: getattr(cfg, name) for name in (*own, *SHARED_IMAGE_SETTINGS)}
    if cfg.TEXT_LAYER:
        settings["TEXT_LAYER"] = text_layer.recipe(text_layer.default_config())
    return settings


def check_names(rows):
    """Every output name is a plain .jpg/.jpeg file name (banners are JPEG bytes), checked up front."""
    for row in rows:
        images.check_banner_name(row.bannerImage, f"test row id={row.id}")


# ---------------------------------------------------------------------------------------------------------------------
# seeds and resume


def try_seed(seed, row_id, attempt, part=0):
    """The 63-bit seed of one generation: from (run seed, row id, try, part) only, never from batch or order."""
    run = seed if attempt == 1 else f"{seed}/try{attempt}"
    return seeds.row_seed(run, row_id if part == 0 else f"{row_id}#part{part + 1}")


def row_key(settings, seed, prompt, inputs):
    """What must be equal for an existing banner to count as this run's: settings, seed, prompt, input banners."""
    return files.settings_key({"settings": files.settings_key(settings), "seed": seed, "prompt": prompt,
                               "inputs": list(inputs)})


def load_records(target):
    """Manifest records of every process of every earlier run into `target` ({bannerImage: record}; newest wins)."""
    records = {}
    pattern = target.meta(".manifest.rank*.json")
    for path in sorted(pattern.parent.glob(pattern.name)):
        for name, rec in (files.read_json(path, {}) or {}).items():
            if name not in records or rec.get("finished", 0) > records[name].get("finished", 0):
                records[name] = rec
    return records


def _differences(old, new):
    if not isinstance(old, dict):
        return "unknown earlier settings (banners made outside this tool, or by an older version)"
    keys = sorted(set(old) | set(new))
    diff = [f"{k} {old.get(k, '-')!r} -> {new.get(k, '-')!r}" for k in keys if old.get(k) != new.get(k)]
    return ", ".join(diff[:6]) + (f" (+{len(diff) - 6} more)" if len(diff) > 6 else "") if diff else \
        "the same settings but other prompts or input banners"


def plan(target, rows, keys, settings, overwrite):
    """The rows still to generate. A valid banner whose record matches `keys[row.id]` is done; a banner made with
    other settings is refused (one line naming what differs) unless `overwrite`."""
    records = load_records(target)
    todo, foreign = [], []
    for row in rows:
        path = target.out_dir / row.bannerImage
        if not path.exists():
            todo.append(row)
            continue
        rec = records.get(row.bannerImage) or {}
        if images.is_banner_jpeg(path) and rec.get("key") == keys[row.id]:
            continue
        todo.append(row)
        if path.exists() and rec.get("key") != keys[row.id]:
            foreign.append(row)
    if foreign and not overwrite:
        earlier = files.read_json(target.meta(".settings.json"))
        raise InputError(f"{target.out_dir}: {len(foreign)} banner(s) (e.g. {foreign[0].bannerImage}) were made with "
                         f"other settings: {_differences(earlier, settings)}; pass --OVERWRITE=1 to regenerate them, "
                         f"or another --OUT_DIR")
    return todo


# ---------------------------------------------------------------------------------------------------------------------
# the guarded generate loop


@dataclass
class Job:
    """One row to generate: its prompt, its per-part inputs (init banner paths for img2img; [None] for text-to-image),
    handed to the method's generate function as they are, and
    what its manifest record says of them (init_bannerImage)."""
    row: object
    prompt: str
    inputs: list
    init_names: list = field(default_factory=list)


@dataclass
class Guard:
    """Duplication guard settings: `measure(PIL images) -> (similarities, nearest names)`, or None for off."""
    measure: Callable = None
    dup_max: float = 0.85
    max_tries: int = 3


def generate_rows(target, jobs, keys, generate, finish, retry, guard, batch_size, desc, rank=0):
    """Generate `jobs` into `target`: `generate([(prompt, input, seed)], params) -> [PIL]` in batches,
    `finish(job, [PIL per part]) -> PIL` (post-processing, text layer), `retry(attempt) -> params` (attempt 1 = the
    method's own settings). Returns {"rows", "generations", "seconds"}."""
    store = files.JsonStore(target.meta(f".manifest.rank{rank}.json"), every=1)
    parts = max((len(j.inputs) for j in jobs), default=1)
    rows_per_batch = max(1, batch_size // parts)
    generated, started = 0, time.perf_counter()
    bar = progress(total=len(jobs), desc=desc, unit="banner")
    for b in range(0, len(jobs), rows_per_batch):
        batch = jobs[b:b + rows_per_batch]
        best, tried, seconds, pending = {}, {}, {j.row.id: 0.0 for j in batch}, list(batch)
        for attempt in range(1, (guard.max_tries if guard.measure else 1) + 1):
            params = retry(attempt)
            calls = [(j.prompt, part_input, try_seed(target.seed, j.row.id, attempt, p))
                     for j in pending for p, part_input in enumerate(j.inputs)]
            t0 = time.perf_counter()
            outs = generate(calls, params)
            generated += len(calls)
            finals, k = [], 0
            for j in pending:
                finals.append(images.banner_jpeg(finish(j, outs[k:k + len(j.inputs)])))
                k += len(j.inputs)
            # the guard measures the banner exactly as it will be on disk (JPEG), as the evaluation will
            if guard.measure is not None:
                sims, nearest = guard.measure([images.decode_image(jpeg) for jpeg in finals])
            else:
                sims, nearest = [float("nan")] * len(finals), [""] * len(finals)
            wall = time.perf_counter() - t0
            still = []
            for j, jpeg, sim, near in zip(pending, finals, sims, nearest):
                seconds[j.row.id] += wall / len(pending)
                tried[j.row.id] = attempt
                rec = {"jpeg": jpeg, "seed": try_seed(target.seed, j.row.id, attempt), "dup_similarity": float(sim),
                       "dup_nearest": near, **{k: v for k, v in params.items() if k in MANIFEST_COLUMNS}}
                if j.row.id not in best or sim < best[j.row.id]["dup_similarity"]:
                    best[j.row.id] = rec
                if guard.measure is not None and sim > guard.dup_max:
                    still.append(j)
            pending = still
            if not pending:
                break
        for j in batch:
            rec = best[j.row.id]
            jpeg = rec.pop("jpeg")
            # record first, then the image: a kill in between leaves a record whose banner is missing (redone), never
            # a banner without its record (which would leave its time_submission cell empty). A banner being redone
            # goes first, or a kill would leave the old image under the new record's key, counted as finished.
            (target.out_dir / j.row.bannerImage).unlink(missing_ok=True)
            store.put(j.row.bannerImage, {"id": j.row.id, "bannerImage": j.row.bannerImage,
                                          "init_bannerImage": ";".join(j.init_names), **rec, "tries": tried[j.row.id],
                                          "seconds": seconds[j.row.id], "prompt": j.prompt, "key": keys[j.row.id],
                                          "finished": time.time()})
            images.save_banner(jpeg, target.out_dir, j.row.bannerImage)
        bar.update(len(batch))
    bar.close()
    store.save()
    return {"rows": len(jobs), "generations": generated, "seconds": time.perf_counter() - started}


def run_share(cfg, target, rows, keys, settings, pipe, make_jobs, generate, finish, retry, guard, name, rank=0,
              world=1, unet_formula=("", 0)):
    """One process's share of one run, the same for every method: this rank's rows, the resume plan, the guarded
    loop, and the compute accounting (UNet evaluations counted at the UNet, against the method's `unet_formula`:
    (how it is computed, evaluations per banner on the first try)). `make_jobs(rows) -> [Job]`."""
    import torch

    mine = devices.shard(rows, rank, world)
    todo = plan(target, mine, keys, settings, cfg.OVERWRITE)
    record_settings(target, settings)
    print(f"[rank {rank}/{world}] {len(mine)} rows, {len(mine) - len(todo)} already done, {len(todo)} to generate "
          f"into {target.out_dir} (seed {target.seed})", file=sys.stderr)
    cuda = str(pipe.device).startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    calls_before = pipe.unet_calls[0]
    figures = generate_rows(target, make_jobs(todo), keys, generate, finish, retry,
                            Guard(guard.measure if guard else None, cfg.DUP_MAX, cfg.DUP_MAX_TRIES), cfg.BATCH_SIZE,
                            f"{name} [rank {rank}]", rank)
    figures.update(rank=rank, unet_images=pipe.unet_calls[0] - calls_before)
    from inference.pipelines import compute_line

    print(compute_line(figures, unet_formula[1], unet_formula[0],
                       torch.cuda.max_memory_allocated() / 2**30 if cuda else None), file=sys.stderr)
    return figures


# ---------------------------------------------------------------------------------------------------------------------
# after the run


def merge_manifest(target, rows, dup_max=None):
    """Rank 0, after every process finished: one manifest.csv for every row, in info order; every row must be done."""
    import pandas as pd

    records = load_records(target)
    out, missing = [], []
    for row in rows:
        rec = records.get(row.bannerImage)
        if rec is None or not images.is_banner_jpeg(target.out_dir / row.bannerImage):
            missing.append(row.id)
            continue
        out.append({c: rec.get(c, "") for c in MANIFEST_COLUMNS})
    if missing:
        raise InputError(f"{target.out_dir}: no finished banner for {len(missing)} row(s) (e.g. id={missing[0]}): "
                         f"rerun to finish them")
    manifest = pd.DataFrame(out, columns=MANIFEST_COLUMNS)
    files.write_csv(target.meta("manifest.csv"), manifest)
    sims = pd.to_numeric(manifest["dup_similarity"], errors="coerce").dropna()
    if len(sims):
        print(f"{target.out_dir}: {len(manifest)} banners; duplication similarity mean {sims.mean():.4f}, max "
              f"{sims.max():.4f} (nearest training banner, Inception cosine; guard level {dup_max}); "
              f"{int((pd.to_numeric(manifest['tries'], errors='coerce') > 1).sum())} rows regenerated",
              file=sys.stderr)
    else:
        print(f"{target.out_dir}: {len(manifest)} banners (duplication guard off: no similarity measured)",
              file=sys.stderr)
    if target.submission:
        write_times(manifest, target.times_csv())
    return manifest


def write_times(manifest, path):
    """time_submission{k}.csv: fname,time (seconds per image, measured around its generation)."""
    import pandas as pd

    times = pd.DataFrame({"fname": manifest["bannerImage"],
                          "time": pd.to_numeric(manifest["seconds"], errors="coerce").round(4)})
    files.write_csv(path, times)


def run_all(targets, rows, run_once, dup_max=None):
    """Every target in turn on every process: `run_once(target, rank, world, device)` generates this process's share;
    rank 0 merges the manifest after all processes are done (the folders are locked by `prepare_run`)."""
    rank, world, device = devices.process_info()
    figures = []
    for target in targets:
        figures.append(run_once(target, rank, world, device))
        devices.wait_for_everyone()
        if rank == 0:
            merge_manifest(target, rows, dup_max)
        devices.wait_for_everyone()
    return figures


def copy_rows(cfg, rows):
    """TEXT_LAYER: each row's Vietnamese copy from test/info.csv (never the translation), every character checked
    against the font now, before any model loads. {} when the layer is off."""
    if not cfg.TEXT_LAYER:
        return {}
    from core import dataset
    from inference import text_layer

    layer_cfg = text_layer.default_config()
    info = dataset.read_info(dataset.split_dir("test", cfg.DATA_DIR) / "info.csv")
    by_id = {row.id: row for row in info.itertuples()}
    out = {}
    for row in rows:
        if row.id not in by_id:
            raise InputError(f"test row id={row.id} is not in test/info.csv (the copy TEXT_LAYER sets)")
        text_layer.checked_copy(by_id[row.id], layer_cfg)
        out[row.id] = by_id[row.id]
    return out


def finisher(cfg, mean_rgb, copies):
    """The method's `finish(job, parts)`: post-processing (POSTPROCESS, knobs PP_*), then the row's copy set on the
    final canvas (TEXT_LAYER). The order is the documented one: generate -> post-process -> text layer -> JPEG."""
    from inference import text_layer

    recipe = postprocess.Recipe.from_config(cfg)
    layer_cfg = text_layer.default_config() if cfg.TEXT_LAYER else None

    def finish(job, parts):
        image = postprocess.compose(parts, mean_rgb, recipe) if cfg.POSTPROCESS else parts[0]
        if cfg.TEXT_LAYER:
            image = text_layer.apply(images.to_banner(image), copies[job.row.id], layer_cfg)
        return image

    return finish


def prepare_run(cfg, rows):
    """Everything a method does before its model loads: the guard knobs checked, the runs' folders checked and locked
    (a second run into a folder in use is refused now, not after minutes of loading), the copy's glyphs checked
    (TEXT_LAYER), the training statistics (guard features, mean colour) computed once by rank 0 and read by the
    others. Returns (targets, device, guard or None, finish, locks): hold `locks` (an ExitStack) for the whole run."""
    import contextlib

    from inference.train_pool import training_stats

    if cfg.DUP_GUARD and cfg.DUP_MAX_TRIES < 1:
        raise InputError(f"DUP_MAX_TRIES={cfg.DUP_MAX_TRIES}: must be >= 1 (the first generation counts)")
    targets = run_targets(cfg.OUT_DIR, cfg.SEED, cfg.SUBMISSION, cfg.SEEDS, cfg.SUBMISSION_DIR)
    prepare_targets(targets)
    rank, world, device = devices.process_info()
    locks = contextlib.ExitStack()
    for target in targets:  # each process locks its share of each folder
        locks.enter_context(files.FolderLock(target.meta("x").parent, f".lock.{target.out_dir.name}.rank{rank}"))
    copies = copy_rows(cfg, rows)
    device = devices.pick_device(cfg.DEVICE) if world == 1 else device
    if rank == 0:  # one process fills the training-statistics cache; the others then read it
        guard, mean_rgb = training_stats(cfg.DATA_DIR, device, cfg.CACHE_DIR, cfg.DUP_GUARD, cfg.POSTPROCESS)
    devices.wait_for_everyone()
    if rank != 0:
        guard, mean_rgb = training_stats(cfg.DATA_DIR, device, cfg.CACHE_DIR, cfg.DUP_GUARD, cfg.POSTPROCESS)
    return targets, device, guard, finisher(cfg, mean_rgb, copies), locks


def record_settings(target, settings):
    """The settings of the newest run into `target`, so a refused resume can say what changed."""
    files.write_json(target.meta(".settings.json"), settings)
