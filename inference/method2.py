"""
Method 2: text-to-image with Stable Diffusion 2.1 (v-prediction) and the LoRA that run/train_sd.sh fine-tuned on the
captioned training banners. Each test row is prompted with the image description an LLM wrote for it
(run/prompts.sh); a row without one falls back to its English copy, and the run counts those rows. Every prompt is
fitted to the text encoder's 77-token window with the project's prompt fitter (inference/prompts.py). DDIM with
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

from core import dataset, devices, files, knobs
from core.progress import quiet_libraries
from inference import accel, pipelines, prompts, runner

DATA_DIR = "data"  # the data folder: test/ and train/ (also from env DATA_DIR: the run/*.sh contract)
MODEL = "stabilityai/stable-diffusion-2-1"  # SD 2.1 (v-prediction) base: hub id or local folder
LORA = "outputs/lora_sd21"  # the LoRA of run/train_sd.sh: its folder or the .safetensors file ("" = the base model)
LORA_SCALE = 1.0  # how strongly the LoRA applies (0 = the base model's images)
FUSE_LORA = False  # fuse the LoRA into the weights (a little faster per step; the scale is baked in)
SCHEDULER = "ddim_zero_snr"  # ddim_zero_snr (DDIM, zero terminal SNR, trailing timesteps) | ddim | dpmpp | lcm | default
ADAPTER = ""  # few-step LoRA loaded beside LORA (run/distill.sh's consistency LoRA, with SCHEDULER=lcm); "" = off
ADAPTER_WEIGHT = 1.0  # how strongly the few-step LoRA applies
DECODER = "full"  # full (the checkpoint's VAE) | TAESD, hub id or folder (madebyollin/taesd): decodes the latents
STEPS = 30  # scheduler steps
GUIDANCE = 7.5  # classifier-free guidance scale (> 1 doubles the UNet batch)
GUIDANCE_RESCALE = 0.7  # rescale of the guided prediction (Lin et al. 2023, with zero-terminal-SNR; 0 = off)
NEGATIVE_PROMPT = prompts.NEGATIVE_PROMPT  # what to steer away from ("" = none)
STYLE = ""  # words appended to every prompt when they fit
PROMPT_FILE = "llava_prompt.json"  # in $DATA_DIR/test: {bannerImage: prompt} from run/prompts.sh
INFO_FILE = "info_trans.csv"  # in $DATA_DIR/test: the copy a row without an LLM prompt falls back to
OUT_DIR = "inference/method_2"  # output folder (also from env OUT_DIR; SUBMISSION=1 writes SUBMISSION_DIR/submission{k})
GEN_SIZE = (1024, 536)  # generation size WxH, multiples of 8; outputs are resized to exactly 1024x533
SHARED_KNOBS = (runner,)  # the run machinery's knobs (guard, POSTPROCESS + PP_*, TEXT_LAYER, SUBMISSION, SEED, ...)
# tiny random model: few steps, small batches, small canvas (outputs still 1024x533); the smoke LoRA of run/train_sd.sh
SMOKE_OVERRIDES = dict(STEPS=3, BATCH_SIZE=2, GEN_SIZE=(256, 136), LORA="outputs/smoke/lora_sd21")

_IMAGE_SETTINGS = ("MODEL", "LORA_SCALE", "FUSE_LORA", "SCHEDULER", "ADAPTER", "ADAPTER_WEIGHT", "DECODER", "STEPS", "GUIDANCE", "GUIDANCE_RESCALE",
                   "NEGATIVE_PROMPT", "GEN_SIZE")  # + runner.SHARED_IMAGE_SETTINGS
_LORA_FILE = "pytorch_lora_weights.safetensors"  # the name save_lora_weights gives it


# ---------------------------------------------------------------------------------------------------------------------
# inputs


def lora_file(cfg):
    """The LoRA's .safetensors file (LORA names it or its folder), or None for the base model; one line if missing."""
    if not cfg.LORA:
        return None
    path = Path(cfg.LORA)
    path = path / _LORA_FILE if path.is_dir() else path
    if not path.is_file():
        raise knobs.InputError(f"LoRA not found: {path} (train it with bash run/train_sd.sh, or --LORA= for the base "
                               f"model)")
    return path


def read_inputs(cfg):
    """Test rows and each row's LLM prompt ("" when there is none, or when the prompt stage fell back to the copy: the
    fitted copy stands in, counted)."""
    rows = runner.read_test_rows(cfg)
    test = dataset.split_dir("test", cfg.DATA_DIR)
    prompt_path = test / cfg.PROMPT_FILE
    llm = files.read_json(prompt_path, {})
    if not isinstance(llm, dict):
        raise knobs.InputError(f"{prompt_path}: expected a JSON object {{bannerImage: prompt}}")
    if not prompt_path.is_file():
        print(f"warning: {prompt_path} not found (run bash run/prompts.sh): every row uses its copy", file=sys.stderr)
    # the prompt stage writes its own fallbacks (the fitted copy) into the JSON as well; its report says which rows
    report = files.read_json(prompt_path.with_name(prompt_path.stem + "_report.json"), {}) or {}
    fell_back = {name for name, rec in report.items() if isinstance(rec, dict) and rec.get("source") == "fallback"}
    return rows, {row.id: "" if row.bannerImage in fell_back else str(llm.get(row.bannerImage) or "").strip()
                  for row in rows}


def fitted_prompts(rows, llm, tokenizer, style=""):
    """{id: prompt within the window}, and how many rows fell back to their copy and how many LLM prompts were cut."""
    count, budget = prompts.token_counter(tokenizer), prompts.window(tokenizer)
    out, fallback, cut = {}, 0, 0
    for row in rows:
        if llm[row.id]:
            prompt, notes = prompts.fit_prompt(llm[row.id], "", "", count, budget, style)
            cut += notes.get("caption") == "cut"
        else:
            prompt, _ = prompts.fit_prompt(row.caption, row.description, row.moreInfo, count, budget, style)
            fallback += 1
        out[row.id] = prompt
    return out, fallback, cut


# ---------------------------------------------------------------------------------------------------------------------
# the pipeline


def load_pipeline(cfg, device):
    from diffusers import StableDiffusionPipeline

    dtype = devices.pick_dtype(device, cfg.DTYPE)
    pipe = devices.load_model(StableDiffusionPipeline.from_pretrained, cfg.MODEL, smoke_family="sd21", dtype=dtype,
                              safety_checker=None, requires_safety_checker=False)
    lora = lora_file(cfg)
    if lora is not None:
        # quiet: a UNet-only LoRA (TRAIN_TEXT_ENCODER=0) makes diffusers warn that the text encoder has no keys
        with quiet_libraries():
            pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="banners")
        if cfg.FUSE_LORA and not cfg.ADAPTER:
            pipe.fuse_lora(lora_scale=cfg.LORA_SCALE)
            pipe.unload_lora_weights()
        else:
            pipe.set_adapters(["banners"], adapter_weights=[cfg.LORA_SCALE])
            pipe.adapter_weights = {"banners": cfg.LORA_SCALE}  # kept active beside the few-step LoRA
    add_fast_parts(pipe, cfg, dtype)
    return pipelines.prepare(pipe, device, cfg.SCHEDULER, cfg.MODEL, cfg.VAE_SLICING, cfg.COMPILE, cfg.CHANNELS_LAST)


def add_fast_parts(pipe, cfg, dtype):
    """The few-step preset (config/method2_fast.py): the banner model's consistency LoRA beside the banner LoRA, each
    at its own weight (both fused with FUSE_LORA=1), and the decoder."""
    accel.add_adapter(pipe, cfg.ADAPTER, cfg.ADAPTER_WEIGHT)
    if cfg.FUSE_LORA and cfg.ADAPTER:
        accel.fuse_adapters(pipe)
    return accel.set_decoder(pipe, cfg.DECODER, dtype)


def generate(pipe, cfg, calls):
    """calls: [(prompt, None, seed)] -> [PIL images], in pipeline calls of at most BATCH_SIZE."""
    width, height = cfg.GEN_SIZE
    out = []
    for i in range(0, len(calls), cfg.BATCH_SIZE):
        chunk = calls[i:i + cfg.BATCH_SIZE]
        out += pipe(prompt=[p for p, _, _ in chunk], negative_prompt=[cfg.NEGATIVE_PROMPT] * len(chunk),
                    width=width, height=height, num_inference_steps=cfg.STEPS, guidance_scale=cfg.GUIDANCE,
                    guidance_rescale=cfg.GUIDANCE_RESCALE,
                    generator=pipelines.generators([s for _, _, s in chunk])).images
    return out


# ---------------------------------------------------------------------------------------------------------------------
# one run


def run_once(cfg, target, rows, prompt, lora_hash, pipe, guard, finish, rank=0, world=1):
    """This process's share of the rows into `target`; returns its compute figures."""
    settings = {**runner.image_settings(cfg, _IMAGE_SETTINGS), "LORA": lora_hash}
    keys = {row.id: runner.row_key(settings, target.seed, prompt[row.id], []) for row in rows}
    guidance = 2 if cfg.GUIDANCE > 1 else 1
    formula = (f"{cfg.STEPS} steps x {guidance} (guidance)" + (" x 2 parts" if runner.parts(cfg) == 2 else ""),
               cfg.STEPS * guidance * runner.parts(cfg))
    # text-to-image has no init banner: a retry of a near-copy changes only the seed (the runner's per-try seed)
    return runner.run_share(
        cfg, target, rows, keys, settings, pipe,
        lambda todo: [runner.Job(r, prompt[r.id], [None] * runner.parts(cfg)) for r in todo],
        lambda calls, _params: generate(pipe, cfg, calls), finish, lambda attempt: {"strength": 1.0}, guard,
        "method 2", rank, world, formula)


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    knobs.announce_smoke("inference / method 2")
    rows, llm = read_inputs(cfg)
    lora = lora_file(cfg)
    lora_hash = files.file_hash(lora)[:16] if lora else ""
    targets, device, guard, finish, locks = runner.prepare_run(cfg, rows)  # before any model loads
    with locks:
        pipe = load_pipeline(cfg, device)
        prompt, fallback, cut = fitted_prompts(rows, llm, pipe.tokenizer, cfg.STYLE)
        if devices.process_info()[0] == 0:
            print(f"prompts: {len(rows) - fallback} from the LLM ({cut} cut to the {prompts.window(pipe.tokenizer)}"
                  f"-token window), {fallback} rows without one use their fitted copy", file=sys.stderr)
        return runner.run_all(targets, rows, lambda target, r, w, _d: run_once(cfg, target, rows, prompt, lora_hash,
                                                                              pipe, guard, finish, r, w), cfg.DUP_MAX)


if __name__ == "__main__":
    knobs.run_main(main)
