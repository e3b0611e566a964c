"""
The run machinery both generation methods share. A method's main() reads top to bottom:

    with runner.open_runs(cfg, rows) as runs:         # folders checked and locked, copy checked, guard ready
        pipe = load_pipeline(cfg, runs.device)        # the method's own pipeline
        jobs = make_jobs(cfg, rows, ...)              # one Job per row: its prompt and its input banners
        for run in runs:                              # OUT_DIR, or one submission{k}/ per seed of SEEDS
            for batch in run.todo_batches(jobs, settings, pipe):  # rows not yet made with these settings
                images = generate(pipe, cfg, batch.calls)       # the method's own call
                run.finish_and_write(batch, images)             # guard, post-processing, text layer, JPEG, record
            run.close(formula)                        # compute summary; manifest.csv (+ time CSV)

- Output folders: one OUT_DIR, or the submission layout: one run per seed into submission{k}/ (banners only: the grader
  reads every file there) with the bookkeeping beside it and time_submission{k}.csv (fname,time).
- Resume that cannot mix runs: a banner counts as done only when it is a valid 1024x533 JPEG (core.images.
  is_banner_jpeg, the one check every stage uses) AND its record (core.files.ItemRecords, as every stage keeps them)
  was made with the same settings (the method's, the seed) and inputs (the row's prompt, its input banners, the text
  layer's copy). A banner made otherwise is refused with one line that names the settings that differ and how to
  overwrite (`--OVERWRITE=1`), never silently kept and never silently replaced (it may be paid work).
- The output folders are checked for writing and locked before any model loads: a second run into a folder in use is
  refused with one line.
- Seeds: per row, per try and per part (`try_seed`), so a banner never depends on batch size, order or process count.
- The guard: each banner is finished (post-processing, text layer), encoded as the JPEG that will be written and
  measured against every training banner. A row above the guard level comes back from `todo_batches` in a batch of its
  own, one try further, until DUP_MAX_TRIES; the method's retry policy says what a try changes (img2img raises
  strength; text-to-image changes only the seed, which the runner does), and the least similar try is kept.
- Manifest: each process records its rows in its own file as they finish (a batch's records first, saved once, then
  its banners: a kill in between redoes the rows); rank 0 merges them into the folder's .records.json, and its rows
  into manifest.csv in info order.
"""
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core import dataset, devices, files, images, knobs, seeds
from core.knobs import InputError
from core.progress import progress
from evaluation import duplication
from inference import pipelines, postprocess, text_layer
from inference.train_pool import training_stats

# ---------------------------------------------------------------------------------------------------------------------
# the knobs of the run machinery, shared by both generation methods (each lists them in SHARED_KNOBS; --help shows
# them; a method's own constant of the same name wins)

OVERWRITE = False  # regenerate banners in OUT_DIR that were made with other settings (else: refused with one line)
BATCH_SIZE = 4  # images per pipeline call (a POSTPROCESS pair's two go in one call, even at BATCH_SIZE=1)
VAE_SLICING = True  # decode a batch's latents one image at a time (less peak memory at 1024x536, same images)
COMPILE = False  # torch.compile the UNet (CUDA; the first batches compile, then each UNet call is faster)
CHANNELS_LAST = False  # UNet in channels_last memory format (measure with bench.generation before turning on)
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
TEXT_LAYER = False  # set the row's Vietnamese copy on the final banner, after POSTPROCESS (its knobs: text_layer.py's)
SUBMISSION = False  # competition layout: one run per seed of SEEDS, with time_submission{k}.csv
SEEDS = (42, 2023)  # SUBMISSION=1: the seeds of submission1 and submission2
SUBMISSION_DIR = "inference"  # SUBMISSION=1: parent of submission1/, submission2/ and the time CSVs
LIMIT = 0  # only the first LIMIT test rows (0 = all): quick looks
CACHE_DIR = ".cache/features"  # training statistics (Inception features, mean colour) by content; shared with evaluation

# the text layer's own knobs (fonts, sizes, disclaimer, placement) are knobs of both methods too (their SHARED_KNOBS),
# all but those of its script mode (its own folders and its re-measuring of written files)
TEXT_LAYER_KNOBS = knobs.Shared(text_layer, without=text_layer.SCRIPT_KNOBS)
# the shared knobs that decide what a banner looks like (each method adds its own): a banner made with other values is
# not this run's
_SHARED_IMAGE_SETTINGS = ("DTYPE", "DUP_GUARD", "DUP_MAX", "DUP_MAX_TRIES", "POSTPROCESS", "PP_PAIR", "PP_TILE_SIZE",
                          "PP_GAP", "PP_BLEND_WEIGHT", "PP_PAD", "TEXT_LAYER")
MANIFEST_COLUMNS = ["id", "bannerImage", "init_bannerImage", "strength", "seed", "tries", "dup_similarity", "seconds",
                    "unet_evals", "dup_nearest", "prompt"]


# ---------------------------------------------------------------------------------------------------------------------
# inputs and settings


def read_test_rows(cfg):
    """The test rows a method generates, from $DATA_DIR/test/INFO_FILE (the English copy by default), checked against
    info.csv's ids, cut to LIMIT, every output name a plain .jpg/.jpeg; errors name the file and the row."""
    test = dataset.split_dir("test", cfg.DATA_DIR)
    info_path = test / cfg.INFO_FILE
    if not info_path.is_file():
        raise InputError(f"{info_path}: file not found (run bash run/translation.sh first, or pass "
                         f"--INFO_FILE=info.csv to prompt with the Vietnamese text)")
    info = dataset.read_info(info_path)
    if cfg.INFO_FILE != "info.csv":
        dataset.check_translation(test, cfg.INFO_FILE)
    rows = list((info.head(cfg.LIMIT) if cfg.LIMIT else info).itertuples())
    for row in rows:  # banners are JPEG bytes: checked up front
        images.check_banner_name(row.bannerImage, f"test row id={row.id}")
    return rows


def parts(cfg):
    """Generations per banner: two for the post-processing's pair (Method 1: from the rank-1 and rank-2 banners;
    Method 2: two seeds), else one."""
    return 2 if cfg.POSTPROCESS and cfg.PP_PAIR else 1


def text_layer_config(cfg):
    """The text layer's Config as the method's knobs set it (e.g. --DISCLAIMER=0, --HEADLINE_PX=56,22)."""
    return text_layer.default_config(**{name: getattr(cfg, name) for name in TEXT_LAYER_KNOBS.names()})


def image_settings(cfg, own):
    """The settings in each banner's resume key: the method's `own` knobs and the shared ones. With TEXT_LAYER on, the
    text layer's whole recipe (its settings and the fonts' bytes) stands for it, so a new font or layer setting redoes
    the banners instead of keeping ones set the old way."""
    settings = {name: getattr(cfg, name) for name in (*own, *_SHARED_IMAGE_SETTINGS)}
    if cfg.TEXT_LAYER:
        settings["TEXT_LAYER"] = text_layer.recipe(text_layer_config(cfg))
    return settings


def copy_rows(cfg, rows, layer_cfg):
    """TEXT_LAYER: each row's Vietnamese copy from test/info.csv (never the translation), every character checked
    against the font now, before any model loads."""
    info = dataset.read_info(dataset.split_dir("test", cfg.DATA_DIR) / "info.csv")
    by_id = {row.id: row for row in info.itertuples()}
    for row in rows:
        if row.id not in by_id:
            raise InputError(f"test row id={row.id} is not in test/info.csv (the copy TEXT_LAYER sets)")
        text_layer.checked_copy(by_id[row.id], layer_cfg)
    return {row.id: by_id[row.id] for row in rows}


# ---------------------------------------------------------------------------------------------------------------------
# seeds and resume


def try_seed(seed, row_id, attempt, part=0):
    """The 63-bit seed of one generation: from (run seed, row id, try, part) only, never from batch or order."""
    run = seed if attempt == 1 else f"{seed}/try{attempt}"
    return seeds.row_seed(run, row_id if part == 0 else f"{row_id}#part{part + 1}")


@dataclass(frozen=True)
class Place:
    """Where one run writes: its banner folder, its seed, and whether it is a submission folder (whose bookkeeping is
    kept beside it, since the grader reads every file inside)."""
    out_dir: Path
    seed: int
    submission: bool = False

    def meta(self, name):
        return self.out_dir.parent / f"{self.out_dir.name}_{name}" if self.submission else self.out_dir / name

    def records(self, settings=None, rank=None):
        """What made each banner here (files.ItemRecords: settings, inputs and the manifest's columns): the folder's
        record, or the one process `rank` appends to during a run (merged into the folder's by merge_records)."""
        return files.ItemRecords(self.meta(".records.json" if rank is None else f".records.rank{rank}.json"), settings)

    def merge_records(self):
        """The processes' records folded into the folder's, then removed: rank 0 does it at the start (what an
        interrupted run left) and once every process is done, so no banner has two records."""
        pattern = self.meta(".records.rank*.json")
        parts = sorted(pattern.parent.glob(pattern.name))
        if parts:
            records = self.records()
            for part in parts:
                records.update(files.ItemRecords(part))
            records.save()
            for part in parts:
                part.unlink()


def places(cfg):
    """The runs to make: [OUT_DIR with SEED], or one submission{k}/ per seed of SEEDS."""
    if not cfg.SUBMISSION:
        return [Place(Path(cfg.OUT_DIR), int(cfg.SEED))]
    if len(cfg.SEEDS) < 1:
        raise InputError("SUBMISSION=1 needs at least one seed in SEEDS")
    return [Place(Path(cfg.SUBMISSION_DIR) / f"submission{k}", int(s), True) for k, s in enumerate(cfg.SEEDS, start=1)]


# ---------------------------------------------------------------------------------------------------------------------
# before the model loads


@dataclass(frozen=True)
class Finishing:
    """What follows generation, in the documented order: post-processing (a Recipe, None = off) -> the row's copy set
    on the final canvas (the text layer's Config, None = off) -> JPEG (by the runner)."""
    recipe: postprocess.Recipe = None
    mean_rgb: tuple = None
    layer_cfg: knobs.Config = None
    copies: dict = None
    layouts: dict = None  # {row id: the banner whose text blocks place its copy}; a row without one: the calmest box

    def key_inputs(self, row_id):
        """What the text layer draws from for this row, beyond its settings (in the recipe): the copy it sets and the
        text block that places it (text_layer.row_key; open_runs found the blocks). [] when the layer is off, so such
        runs keep their keys."""
        if self.layer_cfg is None:
            return []
        copy = text_layer.extract_copy(self.copies[row_id], self.layer_cfg)
        return [text_layer.row_key(copy, (self.layouts or {}).get(row_id), self.layer_cfg)]

    def apply(self, row_id, generated):
        image = postprocess.compose(generated, self.mean_rgb, self.recipe) if self.recipe else generated[0]
        if self.layer_cfg is not None:
            image = text_layer.apply(images.to_banner(image), self.copies[row_id], self.layer_cfg,
                                     (self.layouts or {}).get(row_id))
        return image


@dataclass
class Runs:
    """What the runs of one invocation share, and the runs themselves (`for run in runs`: one per output folder)."""
    cfg: knobs.Config
    rows: list
    places: list
    device: str
    rank: int
    world: int
    guard: object  # the duplication guard: measure(PIL images) -> (similarities, nearest names); None = off
    finishing: Finishing

    def __iter__(self):
        return (Run(self, place) for place in self.places)


@contextlib.contextmanager
def open_runs(cfg, rows, layouts=None):
    """Everything a method does before its model loads, so that a bad folder, a run in progress or a missing glyph is
    refused in seconds: the guard knobs checked, every output folder checked for writing and locked by this process,
    the copy's glyphs checked (TEXT_LAYER), the training statistics (guard features, mean colour) and the text blocks
    of the layout banners (`layouts`: {row id: banner}, TEXT_LAYER with LAYOUT; a missing detector fails here) computed
    once by rank 0 and read by the others. Yields the Runs; the locks hold until the block ends."""
    if cfg.DUP_GUARD and cfg.DUP_MAX_TRIES < 1:
        raise InputError(f"DUP_MAX_TRIES={cfg.DUP_MAX_TRIES}: must be >= 1 (the first generation counts)")
    where = places(cfg)
    rank, world, device = devices.process_info(cfg.DEVICE)
    with contextlib.ExitStack() as locks:
        for place in where:  # each process locks its share of each folder (banners and bookkeeping), once writable
            files.check_writable(place.out_dir)
            meta_dir = files.check_writable(place.meta("x").parent)
            locks.enter_context(files.banner_lock(meta_dir, place.out_dir, rank))
        layer_cfg = text_layer_config(cfg) if cfg.TEXT_LAYER else None
        copies = copy_rows(cfg, rows, layer_cfg) if cfg.TEXT_LAYER else None
        # a post-processed canvas is two generations side by side: no banner's layout is left on it
        layouts = layouts if layer_cfg is not None and layer_cfg.LAYOUT and not cfg.POSTPROCESS else {}
        for place in where if rank == 0 else []:  # what an interrupted run's processes left, before any plans
            place.merge_records()
        if rank != 0:  # rank 0 fills the caches (training statistics, text blocks) first; the others then read them
            devices.wait_for_everyone()
        guard, mean_rgb = training_stats(cfg.DATA_DIR, device, cfg.CACHE_DIR, cfg.DUP_GUARD, cfg.POSTPROCESS)
        if layouts:
            text_layer.layout_blocks(sorted(set(layouts.values())), layer_cfg, desc="layout banners' text")
        if rank == 0:
            devices.wait_for_everyone()
        recipe = postprocess.Recipe.from_config(cfg) if cfg.POSTPROCESS else None
        yield Runs(cfg, rows, where, device, rank, world, guard,
                   Finishing(recipe, mean_rgb, layer_cfg, copies, layouts))


# ---------------------------------------------------------------------------------------------------------------------
# one run: the resume plan, the guarded batches, the records, the merge


@dataclass
class Job:
    """One row to generate: its prompt, its per-part inputs (init banner paths for img2img; None for text-to-image),
    handed to the method's generate function as they are, and their names (the manifest's init_bannerImage and the
    resume key)."""
    row: object
    prompt: str
    inputs: list
    init_names: list = field(default_factory=list)


@dataclass
class Batch:
    """Rows generated together at the same try. `calls`: [(prompt, input, seed)], one per part of each row, for the
    method's generate function. finish_and_write puts the rows to try again in `retry`."""
    jobs: list
    attempt: int
    calls: list
    started: float = field(default_factory=time.perf_counter)
    unet_start: int = 0  # the pipeline's UNet counter when the batch was handed out
    retry: list = field(default_factory=list)
    written: bool = False


class Run:
    """One output folder with its seed, on this process."""

    def __init__(self, runs, place):
        self.runs, self.place, self.cfg = runs, place, runs.cfg
        self.inputs, self.best, self.seconds, self.unet_evals, self.figures = {}, {}, {}, {}, {}

    def todo_batches(self, jobs, settings, pipe):
        """This process's share of `jobs` (every world-th row), less the rows already made with `settings` (a banner
        made otherwise is refused, unless OVERWRITE), in batches of at most BATCH_SIZE generations (a row of two
        parts takes two), each one pipeline call. finish_and_write must follow each batch; its near-copies come back
        as a batch of their own. `pipe`: the method's pipeline, whose UNet counter gives each row its UNet evaluations
        (the manifest's)."""
        runs, place = self.runs, self.place
        self.pipe = pipe
        mine = devices.shard(jobs, runs.rank, runs.world)
        todo = self.plan(mine, {**settings, "SEED": place.seed})  # the seed recorded, so a refusal can name it
        print(f"[rank {runs.rank}/{runs.world}] {len(mine)} rows, {len(mine) - len(todo)} already done, {len(todo)} "
              f"to generate into {place.out_dir} (seed {place.seed})", file=sys.stderr)
        if str(runs.device).startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats()
        started, self.figures = time.perf_counter(), {"rows": len(todo), "generations": 0}
        per_batch = max(1, self.cfg.BATCH_SIZE // max((len(job.inputs) for job in todo), default=1))
        with progress(total=len(todo), desc=f"{place.out_dir.name} [rank {runs.rank}]", unit="banner") as self.bar:
            for start in range(0, len(todo), per_batch):
                pending, attempt = todo[start:start + per_batch], 1
                while pending:
                    calls = [(job.prompt, given, try_seed(place.seed, job.row.id, attempt, part))
                             for job in pending for part, given in enumerate(job.inputs)]
                    batch = Batch(pending, attempt, calls, unet_start=pipe.unet_calls[0])
                    self.figures["generations"] += len(batch.calls)
                    yield batch
                    if not batch.written:
                        raise RuntimeError("runner: call run.finish_and_write(batch, images) for every batch")
                    pending, attempt = batch.retry, attempt + 1
        self.figures["seconds"] = time.perf_counter() - started

    def plan(self, jobs, settings):
        """The jobs still to generate (files.plan_items): a valid banner whose record has these settings and the job's
        inputs (prompt, input banners, the text layer's copy and layout banner) is done; a banner made otherwise is
        refused in one line naming what differs, unless OVERWRITE. Opens the records this process appends to."""
        out, finishing = self.place.out_dir, self.runs.finishing
        self.inputs = {job.row.bannerImage: files.settings_key({"prompt": job.prompt, "inputs": [
            *job.init_names, *finishing.key_inputs(job.row.id)]}) for job in jobs}
        records = self.place.records(settings)
        # a broken file under this run's record (e.g. truncated by a killed copy) is redone, not refused
        present = {name for name, made_from in self.inputs.items() if (out / name).exists()
                   and (images.is_banner_jpeg(out / name) or not records.is_current(name, made_from))}
        todo = set(files.plan_items(self.inputs, present, records, self.cfg.OVERWRITE, out, "banner(s)"))
        self.records = self.place.records(settings, self.runs.rank)
        return [job for job in jobs if job.row.bannerImage in todo]

    def finish_and_write(self, batch, generated, strength=1.0):
        """The batch's generations (in the order of batch.calls) -> each row's banner: post-processing, text layer,
        the JPEG as it will be on disk, and its similarity to the nearest training banner (measured on that JPEG, as
        the evaluation will). A row at or under DUP_MAX, or out of tries, is written with its least similar try; the
        others go to batch.retry. `strength`: what this try used (the manifest's column; text-to-image: 1.0)."""
        outputs = iter(generated)  # each row takes its parts' images in turn
        finals = [images.banner_jpeg(self.runs.finishing.apply(job.row.id, [next(outputs) for _ in job.inputs]))
                  for job in batch.jobs]
        sims, nearest = [float("nan")] * len(finals), [""] * len(finals)  # the guard off: nothing measured
        if self.runs.guard is not None:
            sims, nearest = self.runs.guard.measure([images.decode_image(jpeg) for jpeg in finals])
        wall = time.perf_counter() - batch.started
        unet = (self.pipe.unet_calls[0] - batch.unet_start) / len(batch.jobs)  # counted at the UNet, tries add up
        done = []
        for job, jpeg, sim, near in zip(batch.jobs, finals, sims, nearest):
            row_id = job.row.id
            self.seconds[row_id] = self.seconds.get(row_id, 0.0) + wall / len(batch.jobs)
            self.unet_evals[row_id] = self.unet_evals.get(row_id, 0.0) + unet
            if row_id not in self.best or sim < self.best[row_id]["dup_similarity"]:
                self.best[row_id] = {"jpeg": jpeg, "seed": try_seed(self.place.seed, row_id, batch.attempt),
                                     "dup_similarity": float(sim), "dup_nearest": near, "strength": strength}
            if self.runs.guard is not None and sim > self.cfg.DUP_MAX and batch.attempt < self.cfg.DUP_MAX_TRIES:
                batch.retry.append(job)
            else:
                done.append((job.row.bannerImage, self.record(job, batch.attempt)))
        if done:  # saved once per batch: a save per banner rewrites the whole file, quadratic in the rows
            self.records.save()
        for name, jpeg in done:
            images.save_banner(jpeg, self.place.out_dir, name)
            self.bar.update(1)
        batch.written = True

    def record(self, job, tries):
        """The row's record, put before its banner is written (the batch's records are saved, then its banners): a kill
        in between leaves a record whose banner is missing (redone), never a banner without its record (its
        time_submission cell would be empty). A banner being redone goes first, or a kill would leave the old image
        under the new record's key, counted as finished. Returns the banner's JPEG bytes."""
        rec, name = self.best.pop(job.row.id), job.row.bannerImage
        jpeg = rec.pop("jpeg")
        (self.place.out_dir / name).unlink(missing_ok=True)
        self.records.put(name, self.inputs[name], id=job.row.id, bannerImage=name,
                         init_bannerImage=";".join(job.init_names), **rec, tries=tries,
                         seconds=self.seconds.pop(job.row.id), unet_evals=round(self.unet_evals.pop(job.row.id), 2),
                         prompt=job.prompt)
        return jpeg

    def close(self, unet_formula):
        """This process's compute summary (UNet evaluations counted at the UNet, against the method's `unet_formula`:
        (how it is computed, evaluations per banner on a first try)); then, once every process is done, rank 0 merges
        the records into manifest.csv (SUBMISSION: and time_submission{k}.csv). Returns the figures."""
        import torch  # loaded with the pipeline

        figures = dict(self.figures, rank=self.runs.rank, unet_images=pipelines.unet_images_since_last(self.pipe))
        peak_gib = torch.cuda.max_memory_allocated() / 2**30 if str(self.runs.device).startswith("cuda") else None
        print(pipelines.compute_line(figures, unet_formula[1], unet_formula[0], peak_gib), file=sys.stderr)
        devices.wait_for_everyone()
        if self.runs.rank == 0:
            self.place.merge_records()
            merge_manifest(self.place, self.runs.rows, self.cfg.DUP_MAX)
        devices.wait_for_everyone()
        return figures


def merge_manifest(place, rows, dup_max):
    """One manifest.csv for every row, in info order (every row must be done), and its summary line."""
    import pandas as pd

    records = place.records()
    missing = [row.id for row in rows
               if not records.get(row.bannerImage) or not images.is_banner_jpeg(place.out_dir / row.bannerImage)]
    if missing:
        raise InputError(f"{place.out_dir}: no finished banner for {len(missing)} row(s) (e.g. id={missing[0]}): "
                         f"rerun to finish them")
    manifest = pd.DataFrame([{c: records.get(row.bannerImage).get(c, "") for c in MANIFEST_COLUMNS} for row in rows],
                            columns=MANIFEST_COLUMNS)
    files.write_csv(place.meta("manifest.csv"), manifest)
    sims = pd.to_numeric(manifest["dup_similarity"], errors="coerce").dropna()
    summary = " (duplication guard off: no similarity measured)"
    if len(sims):
        regenerated = int((pd.to_numeric(manifest["tries"], errors="coerce") > 1).sum())
        summary = (f"; duplication similarity mean {sims.mean():.4f}, max {sims.max():.4f} (nearest training banner, "
                   f"Inception cosine; guard level {dup_max}); {regenerated} rows regenerated")
    print(f"{place.out_dir}: {len(manifest)} banners{summary}", file=sys.stderr)
    if place.submission:  # fname,time: seconds per image, measured around its generation
        files.write_csv(place.out_dir.parent / f"time_{place.out_dir.name}.csv", pd.DataFrame({
            "fname": manifest["bannerImage"], "time": pd.to_numeric(manifest["seconds"], errors="coerce").round(4)}))
    return manifest
