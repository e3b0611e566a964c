"""
Method 1: retrieval-guided img2img. Each test row's banner is Stable Diffusion 1.5 (Realistic Vision V5.1 with the
sd-vae-ft-mse VAE) repainting the training banner that retrieval ranked first for it, prompted by the row's English
copy fitted to CLIP's 77 tokens (core/prompt_fit.py). A duplication guard regenerates, with more strength and a new
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

Resumable (inference/runner.py): a rerun skips rows whose banner is a valid 1024x533 JPEG made with the same settings,
prompt and init banners; banners made otherwise are refused unless --OVERWRITE=1. Seeds are per row (and per try and
per part), so a row's image does not depend on batch size, order or the number of processes:
    accelerate launch -m inference.method1        # every GPU takes every world-th row; rank 0 merges the manifest
"""
import models
from core import dataset, devices, images, knobs, prompt_fit
from core.progress import silenced
from inference import accel, pipelines, runner

DATA_DIR = "data"  # the data folder: test/ and train/ (also from env DATA_DIR: the run/*.sh contract)
MODEL = models.REALISTIC_VISION  # SD 1.5 checkpoint: hub id[@revision] or local folder
VAE = models.VAE  # VAE loaded separately and passed in ("" = the checkpoint's own; unused with SMOKE=1)
SCHEDULER = "dpmpp"  # dpmpp (DPM-Solver++ multistep) | ddim | pndm | euler_a | lcm | tcd | default (the checkpoint's own)
ADAPTER = ""  # acceleration LoRA stacked on MODEL (models.LCM_LORA_SD15 with SCHEDULER=lcm: config/method1_fast.py); "" = off
ADAPTER_WEIGHT = 1.0  # how strongly the acceleration LoRA applies
DECODER = "full"  # full (the VAE above) | TAESD, hub id or folder (models.TAESD): encodes and decodes the latents
STRENGTH = 0.6  # img2img strength: 0 returns the init banner, 1 ignores it (the seed's 0.6)
STEPS = 30  # scheduler steps; img2img runs int(STEPS * strength) of them
GUIDANCE = 7.5  # classifier-free guidance scale (> 1 doubles the UNet batch)
NEGATIVE_PROMPT = prompt_fit.NEGATIVE_PROMPT  # what to steer away from ("" = none)
STYLE = ""  # words appended to every prompt when they fit (e.g. "advertising banner, high quality photo")
INFO_FILE = "info_trans.csv"  # test copy in English (translation stage); info.csv prompts with the Vietnamese text
RETRIEVAL_FILE = "retrieval.csv"  # in $DATA_DIR/test: id, rank, train_bannerImage (retrieval stage)
OUT_DIR = "inference/method_1"  # output folder (also from env OUT_DIR; SUBMISSION=1 writes SUBMISSION_DIR/submission{k})
GEN_SIZE = (1024, 536)  # generation size WxH, multiples of 8 (533 is not); outputs are resized to exactly 1024x533
DUP_STRENGTH_STEP = 0.1  # each retry adds this much strength (capped at 1.0)
# the run machinery's knobs (guard, POSTPROCESS + PP_*, SUBMISSION, SEED, ...) and the text layer's (TEXT_LAYER=1: fonts,
# sizes, DISCLAIMER, ...), listed by --help
SHARED_KNOBS = (runner, runner.TEXT_LAYER_KNOBS)
# tiny random model: few steps, small batches, small canvas (outputs still 1024x533)
SMOKE_OVERRIDES = dict(STEPS=3, BATCH_SIZE=2, GEN_SIZE=(256, 136))

# the knobs that decide what a banner looks like: a banner made with other values is not this run's
_IMAGE_SETTINGS = ("MODEL", "VAE", "SCHEDULER", "ADAPTER", "ADAPTER_WEIGHT", "DECODER", "STRENGTH", "STEPS", "GUIDANCE",
                   "NEGATIVE_PROMPT", "GEN_SIZE", "DUP_STRENGTH_STEP")  # + the runner's shared ones (runner.image_settings)


# ---------------------------------------------------------------------------------------------------------------------
# inputs


def read_inputs(cfg):
    """Test rows (with prompts' text) and their init banners' names from retrieval.csv (rank 1; and rank 2 for
    POSTPROCESS's pair), each checked to decode; errors name the row."""
    rows = runner.read_test_rows(cfg)
    test = dataset.split_dir("test", cfg.DATA_DIR)
    inits = dataset.read_retrieval(test / cfg.RETRIEVAL_FILE, [r.id for r in rows], ranks=runner.parts(cfg))
    images_dir = dataset.split_dir("train", cfg.DATA_DIR) / "images"
    for row in rows:
        for name in inits[row.id]:
            images.check_image(images_dir / name, f"init banner of test row id={row.id}")
    return rows, {row.id: inits[row.id] for row in rows}


def make_jobs(cfg, rows, inits, tokenizer):
    """One job per row: its English copy fitted to the text encoder's window (caption first) and its init banners."""
    count, budget = prompt_fit.token_counter(tokenizer), prompt_fit.window(tokenizer)
    images_dir = dataset.split_dir("train", cfg.DATA_DIR) / "images"
    fit = [prompt_fit.fit_prompt(row.caption, row.description, row.moreInfo, count, budget, cfg.STYLE)[0] for row in rows]
    return [runner.Job(row, prompt, [images_dir / name for name in inits[row.id]], inits[row.id])
            for row, prompt in zip(rows, fit)]


# ---------------------------------------------------------------------------------------------------------------------
# the pipeline


def load_pipeline(cfg, device, dtype=None):
    """The img2img pipeline in cfg.DTYPE (fp32 on the CPU), or in `dtype` (a torch dtype: tests run bf16 on the CPU)."""
    from diffusers import AutoencoderKL, StableDiffusionImg2ImgPipeline

    dtype = dtype or devices.pick_dtype(device, cfg.DTYPE)
    extra = {}
    if cfg.VAE and not cfg.SMOKE:  # the tiny sd15 stand-in brings its own VAE
        extra["vae"] = models.load(AutoencoderKL.from_pretrained, cfg.VAE, "vae", smoke=cfg.SMOKE, dtype=dtype)
    pipe = models.load(StableDiffusionImg2ImgPipeline.from_pretrained, cfg.MODEL, "realistic_vision", smoke=cfg.SMOKE,
                       dtype=dtype, safety_checker=None, requires_safety_checker=False, **extra)
    add_fast_parts(pipe, cfg, dtype)
    return pipelines.prepare(pipelines.set_scheduler(pipe, cfg.SCHEDULER), device, cfg)


def add_fast_parts(pipe, cfg, dtype):
    """The few-step preset's acceleration LoRA and decoder (config/method1_fast.py; off by default)."""
    accel.add_adapter(pipe, cfg.ADAPTER, cfg.ADAPTER_WEIGHT, key="lcm_lora_sd15", smoke=cfg.SMOKE)
    accel.fuse_adapters(pipe)  # the only LoRA here: fused into the weights, it costs nothing per step
    return accel.set_decoder(pipe, cfg.DECODER, dtype, smoke=cfg.SMOKE)


def generate(pipe, cfg, calls, strength):
    """calls: [(prompt, init banner path, seed)] (a runner batch) -> [PIL images], in one pipeline call."""
    inits = [images.load_rgb(path).resize(tuple(cfg.GEN_SIZE)) for _, path, _ in calls]
    # LCM and TCD warn on every call that timesteps not starting at 999 may surprise: they are chosen (img2img_steps)
    with silenced("diffusers.schedulers.scheduling_lcm", "diffusers.schedulers.scheduling_tcd"):
        return pipe(prompt=[p for p, _, _ in calls], negative_prompt=[cfg.NEGATIVE_PROMPT] * len(calls), image=inits,
                    **pipelines.img2img_steps(pipe.scheduler, cfg.STEPS, strength), guidance_scale=cfg.GUIDANCE,
                    generator=pipelines.generators([s for _, _, s in calls])).images


def retry_strength(cfg, attempt):
    """The retry policy: try k of a near-copy row repaints with more strength (keeping less of the init banner), and
    with a new seed (the runner's)."""
    return min(1.0, cfg.STRENGTH + (attempt - 1) * cfg.DUP_STRENGTH_STEP)


def unet_formula(cfg):
    """(how the UNet evaluations per banner are counted, their number on a first try), for the compute summary."""
    guidance, n_parts = 2 if cfg.GUIDANCE > 1 else 1, runner.parts(cfg)
    return (f"int({cfg.STEPS} steps x {cfg.STRENGTH} strength) x {guidance} (guidance)"
            + (" x 2 parts" if n_parts == 2 else ""), int(cfg.STEPS * cfg.STRENGTH) * guidance * n_parts)


# ---------------------------------------------------------------------------------------------------------------------
# the run


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    knobs.announce_smoke("inference / method 1", cfg.SMOKE)
    rows, inits = read_inputs(cfg)
    # a local adapter by its file's hash: one distilled again into the same folder redoes the banners
    settings = {**runner.image_settings(cfg, _IMAGE_SETTINGS),
                "ADAPTER": accel.adapter_key(cfg.ADAPTER, "lcm_lora_sd15", smoke=cfg.SMOKE)}
    # the text layer sets each copy where its rank-1 banner had text (covering the pseudo-letters a repaint leaves)
    layouts = {row.id: dataset.split_dir("train", cfg.DATA_DIR) / "images" / inits[row.id][0] for row in rows}
    with runner.open_runs(cfg, rows, layouts) as runs:  # folders checked and locked, copy checked, guard ready: no model yet
        pipe = load_pipeline(cfg, runs.device)
        jobs = make_jobs(cfg, rows, inits, pipe.tokenizer)
        for run in runs:  # OUT_DIR with SEED; SUBMISSION=1: submission{k}/ with each seed of SEEDS
            for batch in run.todo_batches(jobs, settings, pipe):  # rows not made with these settings yet; near-copies again
                strength = retry_strength(cfg, batch.attempt)
                generated = generate(pipe, cfg, batch.calls, strength)
                run.finish_and_write(batch, generated, strength)  # guard, post-processing, text layer, JPEG, record
            run.close(unet_formula(cfg))  # compute summary; manifest.csv (+ time CSV) once all processes are done


if __name__ == "__main__":
    knobs.run_main(main)
