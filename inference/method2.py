"""
Method 2: text-to-image with Stable Diffusion 2.1 (v-prediction) and the LoRA that run/train_sd.sh fine-tuned on the
captioned training banners. Each test row is prompted with the image description an LLM wrote for it
(run/prompts.sh); a row without one falls back to its English copy, and the run counts those rows. Every prompt is
fitted to the text encoder's 77-token window with the project's prompt fitter (core/prompt_fit.py). DDIM with
zero-terminal-SNR rescale and trailing timesteps, as the seed ran SD 2.1.

The run machinery is Method 1's (inference/runner.py): resume keyed by settings, the folder check and lock, per-row
seeds, the duplication guard (each output against EVERY training banner; text-to-image has no init banner, so a retry
changes only the seed), optional post-processing (two generations side by side, the winner's recipe) and submission
mode.

reads   $DATA_DIR/test/llava_prompt.json (PROMPT_FILE: {bannerImage: prompt}), $DATA_DIR/test/info_trans.csv (INFO_FILE,
        the fallback copy), $DATA_DIR/train/info.csv + images/ (the guard and the mean colour), LORA (a folder holding
        pytorch_lora_weights.safetensors, or that file)
writes  $OUT_DIR/<bannerImage>: exactly 1024x533 JPEG per test row (generated at GEN_SIZE, 1024x536)
        $OUT_DIR/manifest.csv: the columns of Method 1's manifest (init_bannerImage empty, strength 1.0)
SUBMISSION=1: one run per seed of SEEDS into $SUBMISSION_DIR/submission{1,2}/ + time_submission{1,2}.csv
Several GPUs: accelerate launch -m inference.method2 (each process takes every world-th row; rank 0 merges)
"""
import sys
from pathlib import Path

import models
from core import dataset, devices, files, knobs, prompt_fit
from core.progress import quiet_libraries
from inference import accel, pipelines, runner
from training import distill, lora

DATA_DIR = "data"  # the data folder: test/ and train/ (also from env DATA_DIR: the run/*.sh contract)
MODEL = models.SD21  # SD 2.1 (v-prediction) base: hub id[@revision] or local folder
LORA = "outputs/lora_sd21"  # the LoRA of run/train_sd.sh: its folder or the .safetensors file ("" = the base model)
LORA_SCALE = 1.0  # how strongly the LoRA applies (0 = the base model's images)
FUSE_LORA = False  # fuse the LoRA into the weights (a little faster per step; the scale is baked in)
SCHEDULER = "ddim"  # the sampler: ddim (the seed's) | dpmpp | lcm (with the few-step ADAPTER) | default (the checkpoint's)
NOISE_SCHEDULE = "trained"  # trained: the one the LoRA was trained with (its train_settings.json; none recorded: the
# seed's zero_snr_trailing) | zero_snr_trailing (zero terminal SNR, trailing timesteps) | model (the checkpoint's own)
ADAPTER = ""  # few-step LoRA loaded beside LORA (run/distill.sh's consistency LoRA, with SCHEDULER=lcm); "" = off
ADAPTER_WEIGHT = 1.0  # how strongly the few-step LoRA applies
DECODER = "full"  # full (the checkpoint's VAE) | TAESD, hub id or folder (madebyollin/taesd): decodes the latents
STEPS = 30  # scheduler steps
GUIDANCE = 7.5  # classifier-free guidance scale (> 1 doubles the UNet batch)
GUIDANCE_RESCALE = 0.7  # rescale of the guided prediction (Lin et al. 2023, with zero-terminal-SNR; 0 = off)
NEGATIVE_PROMPT = prompt_fit.NEGATIVE_PROMPT  # what to steer away from ("" = none)
STYLE = ""  # words appended to every prompt when they fit
PROMPT_FILE = "llava_prompt.json"  # in $DATA_DIR/test: {bannerImage: prompt} from run/prompts.sh
INFO_FILE = "info_trans.csv"  # in $DATA_DIR/test: the copy a row without an LLM prompt falls back to
LAYOUT_FILE = "retrieval.csv"  # in $DATA_DIR/test: TEXT_LAYER sets each row's copy where its nearest training banner
# (rank 1 of the retrieval stage) had its text; "" or no such file: the calmest box
OUT_DIR = "inference/method_2"  # output folder (also from env OUT_DIR; SUBMISSION=1 writes SUBMISSION_DIR/submission{k})
GEN_SIZE = (1024, 536)  # generation size WxH, multiples of 8; outputs are resized to exactly 1024x533
# the run machinery's knobs (guard, POSTPROCESS + PP_*, SUBMISSION, SEED, ...) and the text layer's (TEXT_LAYER=1: fonts,
# sizes, DISCLAIMER, ...), listed by --help
SHARED_KNOBS = (runner, runner.TEXT_LAYER_KNOBS)
# tiny random model: few steps, small batches, small canvas (outputs still 1024x533); the smoke LoRA of run/train_sd.sh
SMOKE_OVERRIDES = dict(STEPS=3, BATCH_SIZE=2, GEN_SIZE=(256, 136), LORA="outputs/smoke/lora_sd21")

_IMAGE_SETTINGS = ("MODEL", "LORA_SCALE", "FUSE_LORA", "SCHEDULER", "NOISE_SCHEDULE", "ADAPTER", "ADAPTER_WEIGHT",
                   "DECODER", "STEPS", "GUIDANCE", "GUIDANCE_RESCALE", "NEGATIVE_PROMPT",
                   "GEN_SIZE")  # + the runner's shared ones and the LoRA file's hash
# knobs that cannot change a banner: a change of one does not make run/method2.sh regenerate
_SPEED_KNOBS = ("DEVICE", "BATCH_SIZE", "OVERWRITE", "CACHE_DIR", "VAE_SLICING", "COMPILE", "CHANNELS_LAST")


# ---------------------------------------------------------------------------------------------------------------------
# inputs


def lora_file(cfg, must_exist=True):
    """The LoRA's .safetensors file (LORA names it or its folder), or None for the base model; one line if missing
    (`must_exist`; run/method2.sh's dry run names the file training will write)."""
    if not cfg.LORA:
        return None
    path = Path(cfg.LORA)
    path = path / lora.LORA_FILE if path.is_dir() or (not path.exists() and path.suffix != ".safetensors") else path
    if must_exist and not path.is_file():
        raise knobs.InputError(f"LoRA not found: {path} (train it with bash run/train_sd.sh, or --LORA= for the base "
                               f"model)")
    return path


def stage_files(cfg):
    """For run/method2.sh: what generation reads (the LoRA and the few-step adapter by their files' hashes), the file
    that means done, the settings that can change a banner, and the flag that redoes its banners."""
    data = Path(cfg.DATA_DIR)
    done = Path(cfg.SUBMISSION_DIR) / "submission1_manifest.csv" if cfg.SUBMISSION else \
        Path(cfg.OUT_DIR) / "manifest.csv"
    settings = {k: v for k, v in cfg.as_dict().items() if k not in _SPEED_KNOBS}
    return files.StageFiles(inputs=[data / "test" / "info.csv", data / "test" / cfg.INFO_FILE,
                                    data / "test" / cfg.PROMPT_FILE, data / "train" / "images",
                                    *([data / "test" / cfg.LAYOUT_FILE] if cfg.TEXT_LAYER and cfg.LAYOUT_FILE else []),
                                    *([lora_file(cfg, must_exist=False)] if cfg.LORA else []),
                                    *([accel.adapter_file(cfg.ADAPTER)] if cfg.ADAPTER else [])],
                            done=done, settings=settings, redo_flags=("--OVERWRITE=1",))


def read_inputs(cfg):
    """Test rows and each row's LLM prompt ("" when it has none: the prompt stage writes only the LLM's prompts, so a
    row it fell back on is not there; its fitted copy stands in, counted). A prompt that is not text is refused in one
    line naming the file and the rows."""
    rows = runner.read_test_rows(cfg)
    prompt_path = dataset.split_dir("test", cfg.DATA_DIR) / cfg.PROMPT_FILE
    llm = files.read_string_map(prompt_path, "{bannerImage: prompt}")
    if llm is None:
        print(f"warning: {prompt_path} not found (run bash run/prompts.sh): every row uses its copy", file=sys.stderr)
    return rows, {row.id: (llm or {}).get(row.bannerImage, "").strip() for row in rows}


def lora_hash(cfg):
    """The LoRA file's content hash ("" = the base model): in the resume key, so a retrained LoRA redoes the banners."""
    path = lora_file(cfg)
    return files.file_hash(path)[:16] if path else ""


def distill_record(cfg):
    """(folder, its distill_settings.json) of a few-step LoRA that run/distill.sh made, else (folder or None, None)."""
    path = accel.adapter_file(cfg.ADAPTER)  # the few-step LoRA's file: its folder holds the distillation record
    folder = path.parent if path is not None and path.is_file() else None
    record = files.read_json(folder / distill.SETTINGS_FILE, None) if folder is not None else None
    return folder, record if isinstance(record, dict) else None


def check_adapter(cfg):
    """A consistency LoRA of run/distill.sh learned one banner LoRA on one noise schedule; stacked on another LoRA, or
    sampled on another schedule, it is silently wrong: refused in one line. An adapter without a distillation record
    (LCM-LoRA, TCD from the hub) is not checked."""
    folder, record = distill_record(cfg)
    if record is None:
        return
    teacher = (record.get("settings") or {}).get("teacher_lora_sha256", "")[:16]
    if teacher != lora_hash(cfg):
        raise knobs.InputError(f"ADAPTER {folder} was distilled from another banner LoRA than LORA={cfg.LORA or '(base)'}"
                               f": distil it again (bash run/distill.sh --TEACHER_LORA={cfg.LORA}) or pass its own LORA")
    schedule = lora.schedule_for(cfg.NOISE_SCHEDULE, lora_file(cfg))[0]
    if record.get("noise_schedule") != schedule:
        raise knobs.InputError(f"ADAPTER {folder} was distilled on the noise schedule {record.get('noise_schedule')}, "
                               f"this run samples on {schedule} (NOISE_SCHEDULE={cfg.NOISE_SCHEDULE}): use the same")


def layout_banners(cfg, rows):
    """{row id: the training banner whose text blocks place the row's copy} (TEXT_LAYER with its LAYOUT), else {}."""
    path = dataset.split_dir("test", cfg.DATA_DIR) / cfg.LAYOUT_FILE if cfg.LAYOUT_FILE else None
    if not (cfg.TEXT_LAYER and cfg.LAYOUT and path is not None and path.is_file()):
        return {}
    images_dir = dataset.split_dir("train", cfg.DATA_DIR) / "images"
    return {row_id: images_dir / names[0] for row_id, names in dataset.read_retrieval(path, [r.id for r in rows]).items()}


def make_jobs(cfg, rows, llm, tokenizer):
    """One job per row: its LLM prompt, or its English copy where it has none, fitted to the text encoder's window.
    Rank 0 says how many rows fell back to their copy and how many LLM prompts were cut."""
    count, budget = prompt_fit.token_counter(tokenizer), prompt_fit.window(tokenizer)
    jobs, fallback, cut = [], 0, 0
    for row in rows:
        if llm[row.id]:
            prompt, notes = prompt_fit.fit_prompt(llm[row.id], "", "", count, budget, cfg.STYLE)
            cut += notes.get("caption") == "cut"
        else:
            prompt, _ = prompt_fit.fit_prompt(row.caption, row.description, row.moreInfo, count, budget, cfg.STYLE)
            fallback += 1
        jobs.append(runner.Job(row, prompt, [None] * runner.parts(cfg)))  # text-to-image: no input banner
    if devices.process_info()[0] == 0:
        print(f"prompts: {len(rows) - fallback} from the LLM ({cut} cut to the {budget}-token window), {fallback} rows "
              f"without one use their fitted copy", file=sys.stderr)
    return jobs


# ---------------------------------------------------------------------------------------------------------------------
# the pipeline


def set_scheduler(pipe, cfg):
    """The sampler (SCHEDULER) on the noise schedule the LoRA was trained with (NOISE_SCHEDULE=trained) or the one
    NOISE_SCHEDULE names; the run says which and why."""
    schedule, why = lora.schedule_for(cfg.NOISE_SCHEDULE, lora_file(cfg))
    print(f"sampler {cfg.SCHEDULER} on the noise schedule {schedule or '(the checkpoint’s own)'}: {why}",
          file=sys.stderr, flush=True)
    pipe = pipelines.set_scheduler(pipe, cfg.SCHEDULER, schedule)
    grid = ((distill_record(cfg)[1] or {}).get("knobs") or {}).get("NUM_DDIM_TIMESTEPS")
    if grid and "original_inference_steps" in pipe.scheduler.config:  # LCM, TCD: sample on the distilled timesteps
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, original_inference_steps=grid)
    return pipe


def load_pipeline(cfg, device, dtype=None):
    """SD 2.1 with the LoRA in cfg.DTYPE (fp32 on the CPU), or in `dtype` (a torch dtype: tests run bf16 on the CPU)."""
    from diffusers import StableDiffusionPipeline

    dtype = dtype or devices.pick_dtype(device, cfg.DTYPE)
    pipe = models.load(StableDiffusionPipeline.from_pretrained, cfg.MODEL, "sd21", smoke=cfg.SMOKE, dtype=dtype,
                       safety_checker=None, requires_safety_checker=False)
    path = lora_file(cfg)
    if path is not None:
        # quiet: a UNet-only LoRA (TRAIN_TEXT_ENCODER=0) makes diffusers warn that the text encoder has no keys
        with quiet_libraries():
            pipe.load_lora_weights(lora.read_lora_file(path), adapter_name="banners")  # a bad file: one line
        pipe.set_adapters(["banners"], adapter_weights=[cfg.LORA_SCALE])
        pipe.adapter_weights = {"banners": cfg.LORA_SCALE}  # kept active beside the few-step LoRA
    add_fast_parts(pipe, cfg, dtype)
    return pipelines.prepare(set_scheduler(pipe, cfg), device, cfg)


def add_fast_parts(pipe, cfg, dtype):
    """The few-step preset (config/method2_fast.py): the banner model's consistency LoRA beside the banner LoRA, each
    at its own weight; FUSE_LORA=1 fuses every loaded LoRA at its weight; and the decoder."""
    accel.add_adapter(pipe, cfg.ADAPTER, cfg.ADAPTER_WEIGHT, smoke=cfg.SMOKE)
    if cfg.FUSE_LORA:
        accel.fuse_adapters(pipe)
    return accel.set_decoder(pipe, cfg.DECODER, dtype, smoke=cfg.SMOKE)


def generate(pipe, cfg, calls):
    """calls: [(prompt, None, seed)] (a runner batch) -> [PIL images], in one pipeline call."""
    width, height = cfg.GEN_SIZE
    return pipe(prompt=[p for p, _, _ in calls], negative_prompt=[cfg.NEGATIVE_PROMPT] * len(calls), width=width,
                height=height, num_inference_steps=cfg.STEPS, guidance_scale=cfg.GUIDANCE,
                guidance_rescale=cfg.GUIDANCE_RESCALE, generator=pipelines.generators([s for _, _, s in calls])).images


def unet_formula(cfg):
    """(how the UNet evaluations per banner are counted, their number on a first try), for the compute summary."""
    guidance, n_parts = 2 if cfg.GUIDANCE > 1 else 1, runner.parts(cfg)
    return (f"{cfg.STEPS} steps x {guidance} (guidance)" + (" x 2 parts" if n_parts == 2 else ""),
            cfg.STEPS * guidance * n_parts)


# ---------------------------------------------------------------------------------------------------------------------
# the run


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    knobs.announce_smoke("inference / method 2", cfg.SMOKE)
    rows, llm = read_inputs(cfg)
    check_adapter(cfg)
    settings = {**runner.image_settings(cfg, _IMAGE_SETTINGS), "LORA": lora_hash(cfg),
                "ADAPTER": accel.adapter_key(cfg.ADAPTER, smoke=cfg.SMOKE)}  # LoRA files by their hashes
    with runner.open_runs(cfg, rows, layout_banners(cfg, rows)) as runs:  # folders checked and locked, copy checked, guard ready: no model yet
        pipe = load_pipeline(cfg, runs.device)
        jobs = make_jobs(cfg, rows, llm, pipe.tokenizer)
        for run in runs:  # OUT_DIR with SEED; SUBMISSION=1: submission{k}/ with each seed of SEEDS
            # a near-copy comes back in a batch of its own: the retry policy of text-to-image is the new seed alone
            for batch in run.todo_batches(jobs, settings, pipe):
                generated = generate(pipe, cfg, batch.calls)
                run.finish_and_write(batch, generated)  # guard, post-processing, text layer, JPEG, record
            run.close(unet_formula(cfg))  # compute summary; manifest.csv (+ time CSV) once all processes are done


if __name__ == "__main__":
    knobs.run_main(main)
