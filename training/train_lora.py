"""
LoRA fine-tuning of Stable Diffusion 2.1 on the captioned training banners (Method 2's model), the way diffusers'
examples/text_to_image/train_text_to_image_lora.py trains: accelerate (devices, precision, accumulation, checkpoints,
the loss log), peft (the LoRA), diffusers' LoRA file format.

Reads $DATA_DIR/train/{info.csv, images/, llava_caption.json} (a banner without a VLM caption falls back to its
translated copy in info_trans.csv, else info.csv; the run says how many) and writes into OUT_DIR:
    pytorch_lora_weights.safetensors  the LoRA in diffusers' format (pipe.load_lora_weights(OUT_DIR))
    train_settings.json               every knob, the input hashes, a fingerprint (is this LoRA up to date?) and the
                                      noise schedule to sample with (lora.schedule_from_training)
    losses.csv                        step, epoch, loss, lr
    validation/epoch_NNN.png          fixed prompts, one strip per epoch
    checkpoints/checkpoint_<step>/    accelerate's save_state (LoRA file, optimizer, LR schedule, grad scaler, each
                                      process's RNG; progress.json last) every CHECKPOINT_EVERY steps, the newest
                                      KEEP_CHECKPOINTS kept; a rerun continues from the newest exactly (RESUME=latest)

The defaults are the seed's recipe (rank 4 on the UNet attention projections and the text encoder, 512 px, center
crop, flip, RandAugment, AdamW 1e-4 cosine, 50 epochs, fp16, seed 1337) with its effective batch of 8 done as batch 8 x
accumulation 1 instead of 2 x 4 (the same images per update, 4x the speed; training/README.md), on the noise schedule
Method 2 samples with (zero terminal SNR, trailing timesteps).

    bash run/train_sd.sh [--NAME=value ...]          (accelerate launch; several GPUs: accelerate config first)
"""
import collections
import contextlib
import dataclasses
import importlib.util
import math
import time
from pathlib import Path

import models
from core import devices, files, knobs
from core.progress import progress as progress_bar
from core.progress import quiet_libraries
from core.seeds import row_seed
from training import checkpoints, data, lora

DATA_DIR = "data"  # the data folder (also from env DATA_DIR)
OUT_DIR = "outputs/lora_sd21"  # where the LoRA, logs and checkpoints go (also from env OUT_DIR)
MODEL = models.SD21  # base model: hub id[@revision] or local folder; SMOKE=1: tiny random sd21
CAPTIONS = ""  # the VLM caption file {bannerImage: caption}; "" = $DATA_DIR/train/llava_caption.json
CAPTION_FALLBACK = True  # a banner without a VLM caption trains on its ad copy (reported); False: stop instead
RESOLUTION = (512, 512)  # training size (width, height), multiples of 8; banner-shaped: 768,400
CENTER_CROP = True  # center crop after resizing to cover RESOLUTION; False: random crop
RANDOM_FLIP = True  # random horizontal flip
RANDAUGMENT = True  # torchvision RandAugment (2 ops, magnitude 9)
LORA_RANK = 4  # LoRA rank (alpha = rank) on to_q, to_k, to_v, to_out.0 of every UNet attention
TRAIN_TEXT_ENCODER = True  # also a LoRA on the text encoder's q/k/v/out projections
PREDICTION_TYPE = ""  # "" = the base model scheduler's (SD 2.1: v_prediction); or epsilon | v_prediction
NOISE_SCHEDULE = "zero_snr_trailing"  # zero_snr_trailing: zero terminal SNR + trailing steps (Method 2's); model: as is
LEARNING_RATE = 1e-4  # AdamW learning rate
LR_SCHEDULER = "cosine"  # any diffusers.optimization scheduler: cosine, constant, linear, ...
LR_WARMUP_STEPS = 0  # linear warm-up steps
ADAM_WEIGHT_DECAY = 1e-2  # AdamW weight decay
MAX_GRAD_NORM = 1.0  # gradient clipping
USE_8BIT_ADAM = False  # bitsandbytes AdamW8bit (must be installed)
NUM_EPOCHS = 50  # passes over the training banners
MAX_STEPS = 0  # optimizer steps in all; 0 = NUM_EPOCHS epochs (sets the LR schedule's length)
TRAIN_BATCH_SIZE = 8  # images per micro-batch per process
GRAD_ACCUM = 1  # micro-batches per optimizer step (effective batch = TRAIN_BATCH_SIZE x GRAD_ACCUM x processes)
MIXED_PRECISION = "fp16"  # fp16 | bf16 | no (frozen weights in it, LoRA fp32); on a CPU accelerate runs fp16 as fp32
GRADIENT_CHECKPOINTING = False  # recompute activations: less memory, about half the speed
COMPILE = False  # torch.compile the UNet (and the VAE encoder when it runs every step): faster steps after the first
SNR_GAMMA = 0.0  # Min-SNR loss weighting (5.0 is the paper's); 0 = off
NOISE_OFFSET = 0.0  # noise offset (e.g. 0.05: darker darks, brighter brights); 0 = off
SEED = 1337  # order, augmentation, noise and timesteps all derive from it, per sample
CACHE_LATENTS = True  # encode once what is not random: images if RANDAUGMENT=0 (and mirrors), captions if text frozen
CHECKPOINT_EVERY = 500  # steps between checkpoints (one is also written at the end and at STOP_AT_STEP)
KEEP_CHECKPOINTS = 3  # keep the newest K checkpoints (0 = all)
RESUME = "latest"  # latest = continue from the newest checkpoint in OUT_DIR if any; no = start fresh; or a folder
STOP_AT_STEP = 0  # stop after this step with a checkpoint (train in slices; the LR schedule stays the full run's)
VALIDATION = True  # a strip of images from VALIDATION_PROMPTS after every VALIDATION_EVERY epochs
VALIDATION_EVERY = 1  # epochs between validation strips
VALIDATION_PROMPTS = ()  # fixed prompts; () = the captions of the first VALIDATION_N training banners
VALIDATION_N = 4  # prompts in the strip when VALIDATION_PROMPTS is empty
VALIDATION_STEPS = 25  # DDIM steps per validation image
DATALOADER_WORKERS = 4  # image decoding/augmentation processes (0 = in the training process)
CPU_THREADS = 0  # torch threads on the CPU; 0 = the cores / processes (not OMP_NUM_THREADS, which launchers set)
PROGRESS = True  # the tqdm bar (loss, steps/s)
SMOKE_OVERRIDES = dict(OUT_DIR="outputs/smoke/lora_sd21", RESOLUTION=(64, 32), NUM_EPOCHS=2, TRAIN_BATCH_SIZE=4,
                       CHECKPOINT_EVERY=2, VALIDATION_N=2, VALIDATION_STEPS=2, DATALOADER_WORKERS=0)

# knobs that do not change the trained weights: left out of the fingerprint, so changing them never invalidates a run
_NOT_FINGERPRINTED = ("DATA_DIR", "OUT_DIR", "CAPTIONS", "CHECKPOINT_EVERY", "KEEP_CHECKPOINTS", "RESUME",
                     "STOP_AT_STEP", "VALIDATION", "VALIDATION_EVERY", "VALIDATION_PROMPTS", "VALIDATION_N",
                     "VALIDATION_STEPS", "DATALOADER_WORKERS", "CPU_THREADS", "PROGRESS", "GRADIENT_CHECKPOINTING",
                     "CACHE_LATENTS", "COMPILE")


# ----------------------------------------------------------------------------------------------------------------------
# settings: checked before anything heavy, fingerprinted so a later step can tell whether the LoRA is up to date


def check_settings(cfg):
    width, height = cfg.RESOLUTION if len(cfg.RESOLUTION) == 2 else (0, 0)
    if width <= 0 or height <= 0 or width % 8 or height % 8:
        raise knobs.InputError(f"RESOLUTION must be (width, height), multiples of 8, got {cfg.RESOLUTION}")
    for name in ("TRAIN_BATCH_SIZE", "GRAD_ACCUM", "LORA_RANK", "VALIDATION_EVERY", "CHECKPOINT_EVERY",
                 *(() if cfg.MAX_STEPS else ("NUM_EPOCHS",))):
        if getattr(cfg, name) < 1:
            raise knobs.InputError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.MAX_STEPS < 0:
        raise knobs.InputError(f"MAX_STEPS must be 0 (= NUM_EPOCHS epochs) or more, got {cfg.MAX_STEPS}")
    from diffusers.optimization import SchedulerType

    for name, allowed in (("LR_SCHEDULER", [t.value for t in SchedulerType]), ("PREDICTION_TYPE", ("", "epsilon",
                          "v_prediction")), ("MIXED_PRECISION", ("fp16", "bf16", "no")),
                          ("NOISE_SCHEDULE", tuple(lora.NOISE_SCHEDULES))):
        if getattr(cfg, name) not in allowed:
            raise knobs.InputError(f"{name} must be one of {', '.join(map(repr, allowed))}, got "
                                   f"{getattr(cfg, name)!r}")
    if cfg.USE_8BIT_ADAM and importlib.util.find_spec("bitsandbytes") is None:
        raise knobs.InputError("USE_8BIT_ADAM=1 needs bitsandbytes (pip install bitsandbytes)")


def settings_diff(saved, current):
    return [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]


def stage_files(cfg):
    """For run/method2.sh: what training reads and writes, the lock main() holds on OUT_DIR, the knobs that shape
    the weights."""
    train = Path(cfg.DATA_DIR) / "train"
    settings = {k: v for k, v in cfg.as_dict().items() if k not in _NOT_FINGERPRINTED}
    return files.StageFiles(inputs=[train / "info.csv", train / "info_trans.csv", train / "images",
                                    data.caption_path(cfg.DATA_DIR, cfg.CAPTIONS)],
                            done=Path(cfg.OUT_DIR) / lora.LORA_FILE, settings=settings, set_aside=[Path(cfg.OUT_DIR)],
                            lock=files.FolderLock(cfg.OUT_DIR))


# stop_at: the last step of this run (STOP_AT_STEP, else max_steps); cache_*: the VAE / text encoder runs once
Plan = collections.namedtuple("Plan", "steps_per_epoch max_steps num_epochs stop_at cache_latents cache_text")


def plan_steps(cfg, n_items, world):
    steps_per_epoch = len(data.epoch_steps(n_items, 0, 0, cfg.TRAIN_BATCH_SIZE, cfg.GRAD_ACCUM, world))
    if steps_per_epoch == 0:
        raise knobs.InputError(f"{n_items} banners are fewer than one step's batch (TRAIN_BATCH_SIZE x GRAD_ACCUM "
                               f"x processes = {cfg.TRAIN_BATCH_SIZE * cfg.GRAD_ACCUM * world})")
    max_steps = cfg.MAX_STEPS or cfg.NUM_EPOCHS * steps_per_epoch
    # latents once when an image's pixels are the same every epoch up to a flip (its mirror is encoded too)
    return Plan(steps_per_epoch, max_steps, math.ceil(max_steps / steps_per_epoch),
                min(cfg.STOP_AT_STEP or max_steps, max_steps), cfg.CACHE_LATENTS and cfg.CENTER_CROP
                and not cfg.RANDAUGMENT, cfg.CACHE_LATENTS and not cfg.TRAIN_TEXT_ENCODER)


# ----------------------------------------------------------------------------------------------------------------------
# accelerate: devices, precision, accumulation, the loss log, checkpoints (with the LoRA in diffusers' format)


def resume_point(cfg, out_dir, saved, settings, digest):
    """(checkpoint folder, its step) to continue from, or (None, 0), after checking that it, and a finished LoRA
    already in out_dir (`saved`: its train_settings.json), were made with these settings."""
    found = checkpoints.list_checkpoints(out_dir)
    if saved and cfg.RESUME != "no" and not found:
        raise knobs.InputError(f"{out_dir} holds a LoRA trained with other settings or inputs (differ: "
                               f"{', '.join(settings_diff(saved.get('settings', {}), settings))}): pass another "
                               f"--OUT_DIR, or --RESUME=no to train anew over it")
    if cfg.RESUME in ("", "no"):
        if found:
            raise knobs.InputError(f"{out_dir} already has checkpoints (newest {found[-1][1].name}): --RESUME=latest "
                                   f"continues them, or pass another --OUT_DIR")
        return None, 0
    if cfg.RESUME == "latest" and not found:
        return None, 0
    folder = found[-1][1] if cfg.RESUME == "latest" else Path(cfg.RESUME)
    progress = files.read_json(folder / checkpoints.PROGRESS_FILE)
    if not isinstance(progress, dict) or not isinstance(progress.get("step"), int):
        raise knobs.InputError(f"RESUME={folder}: not a complete checkpoint (no {checkpoints.PROGRESS_FILE})")
    if progress.get("fingerprint") != digest:
        raise knobs.InputError(f"{folder} was made with other settings or inputs (differ: "
                               f"{', '.join(settings_diff(progress.get('settings', {}), settings))}): pass another "
                               f"--OUT_DIR, or the same settings")
    return folder, progress["step"]


# ----------------------------------------------------------------------------------------------------------------------
# models


def load_models(cfg, weight_dtype, device):
    """The frozen base (weight_dtype) as a pipeline that samples on the training schedule (the validation strips'),
    and the training noise scheduler: NOISE_SCHEDULE applied, checked before the large models load."""
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline

    scheduler = models.load(DDPMScheduler.from_pretrained, cfg.MODEL, "sd21", smoke=cfg.SMOKE, subfolder="scheduler",
                            **lora.NOISE_SCHEDULES[cfg.NOISE_SCHEDULE])
    if cfg.PREDICTION_TYPE:
        scheduler.register_to_config(prediction_type=cfg.PREDICTION_TYPE)
    if scheduler.config.rescale_betas_zero_snr and scheduler.config.prediction_type == "epsilon":
        # at zero terminal SNR an epsilon model sees pure noise at the last step and its sampler divides by zero
        raise knobs.InputError(f"NOISE_SCHEDULE={cfg.NOISE_SCHEDULE} (zero terminal SNR) needs v-prediction, and "
                               f"{cfg.MODEL} predicts epsilon: pass --PREDICTION_TYPE=v_prediction or "
                               f"--NOISE_SCHEDULE=model")
    pipe = models.load(StableDiffusionPipeline.from_pretrained, cfg.MODEL, "sd21", smoke=cfg.SMOKE, dtype=weight_dtype,
                       scheduler=DDIMScheduler.from_config(scheduler.config), safety_checker=None,
                       feature_extractor=None, requires_safety_checker=False)
    for model in (pipe.unet, pipe.text_encoder, pipe.vae):
        model.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device), scheduler


@dataclasses.dataclass
class Run:
    """What the training steps share. pipe: the frozen base (its UNet and text encoder carry the LoRA); models: those
    being trained ({"unet", "text_encoder"}), prepared: the same as accelerate prepared them (DDP-wrapped on several
    processes); cache: latents and/or text embeddings encoded once; step_ends: perf_counter after each step."""
    cfg: object
    accelerator: object
    out_dir: Path
    items: list  # [(bannerImage, path, caption)]
    record: dict  # {"fingerprint": sha256, "settings": ...}: what every checkpoint and train_settings.json carry
    pipe: object = None
    noise_scheduler: object = None
    models: dict = None
    prepared: list = None
    params: list = None
    optimizer: object = None
    lr_scheduler: object = None
    dataset: object = None
    cache: dict = None
    step_ends: list = dataclasses.field(default_factory=list)
    strip_seconds: list = dataclasses.field(default_factory=list)


def build(run, plan):
    """Models, LoRA, optimizer and LR schedule prepared by accelerate, with the LoRA hooks; the dataset and what is
    encoded once."""
    import torch
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler

    cfg, accelerator = run.cfg, run.accelerator
    set_seed(cfg.SEED)  # the LoRA's initial weights: the same in every process and every fresh run
    run.pipe, run.noise_scheduler = load_models(cfg, checkpoints.weight_dtype(accelerator), accelerator.device)
    run.models = lora.add_lora(run.pipe.unet, run.pipe.text_encoder if cfg.TRAIN_TEXT_ENCODER else None, cfg.LORA_RANK)
    if cfg.GRADIENT_CHECKPOINTING:
        lora.checkpoint_activations(run.models)
    if cfg.COMPILE:
        lora.compile_models(run.pipe.unet, None if plan.cache_latents else run.pipe.vae)
    run.params = list(lora.trainable(run.models).values())
    adamw = torch.optim.AdamW
    if cfg.USE_8BIT_ADAM:
        import bitsandbytes

        adamw = bitsandbytes.optim.AdamW8bit
    optimizer = adamw(run.params, lr=cfg.LEARNING_RATE, weight_decay=cfg.ADAM_WEIGHT_DECAY)
    # prepared, accelerate steps the schedule once per process per optimizer step (skipping fp16-skipped steps):
    # its length counts processes too, as in diffusers' example
    world = accelerator.num_processes
    lr_scheduler = get_scheduler(cfg.LR_SCHEDULER, optimizer, num_warmup_steps=cfg.LR_WARMUP_STEPS * world,
                                 num_training_steps=plan.max_steps * world)
    *run.prepared, run.optimizer, run.lr_scheduler = accelerator.prepare(*run.models.values(), optimizer,
                                                                         lr_scheduler)
    checkpoints.register_lora_hooks(accelerator, run.models, "pass --RESUME=no")
    run.dataset = data.BannerDataset(run.items, run.pipe.tokenizer, data.make_transform(
        cfg.RESOLUTION, cfg.CENTER_CROP, cfg.RANDAUGMENT), cfg.SEED, cfg.RANDOM_FLIP)
    run.cache = encode_once(run, plan.cache_latents, plan.cache_text)


def embed(run, input_ids):
    """Text embeddings from the text encoder as trained (prepared when it has a LoRA)."""
    text_encoder = run.prepared[1] if run.cfg.TRAIN_TEXT_ENCODER else run.pipe.text_encoder
    return text_encoder(input_ids.to(run.accelerator.device), return_dict=False)[0]


def encode_once(run, latents, text):
    """The VAE posterior of every banner and of its mirror image (rows n + i), and/or the text embedding of every
    caption, computed once: then an epoch costs only the UNet (and the text encoder when it is trained)."""
    import torch

    n, batch_size, dataset = len(run.dataset), run.cfg.TRAIN_BATCH_SIZE, run.dataset
    moments, texts = ([], []), []  # [plain, mirrored] chunks of (mean, std)
    with torch.no_grad():
        for start in progress_bar(range(0, n, batch_size), desc="encoding once", unit="batch",
                                  disable=not (run.cfg.PROGRESS and run.accelerator.is_main_process
                                               and (latents or text))):
            index = list(range(start, min(start + batch_size, n)))
            if latents:
                pixels = torch.stack([dataset.pixels(i, 0, flip=False) for i in index]).to(run.accelerator.device)
                for k, view in enumerate((pixels, pixels.flip(-1))):
                    moments[k].append(lora.posterior_moments(run.pipe.vae, view))
            if text:
                texts.append(embed(run, dataset.input_ids(index)))
    cache = {"text": torch.cat(texts)} if text else {}
    if latents:
        means, stds = zip(*moments[0], *moments[1])
        cache.update(mean=torch.cat(means), std=torch.cat(stds))
    return cache


# ----------------------------------------------------------------------------------------------------------------------
# a step


def micro_batches(run, epoch, steps):
    """This process's micro-batches of the given steps, in order (micro-batch a of process r is at a * world + r)."""
    import torch

    world, rank = run.accelerator.num_processes, run.accelerator.process_index
    mine = [step[a * world + rank] for step in steps for a in range(run.cfg.GRAD_ACCUM)]
    if "mean" in run.cache:  # no image to load
        for index in mine:
            yield {"index": index, "input_ids": run.dataset.input_ids(index)}
        return
    yield from torch.utils.data.DataLoader(run.dataset, batch_sampler=[[(i, epoch) for i in b] for b in mine],
                                           num_workers=run.cfg.DATALOADER_WORKERS,
                                           pin_memory=run.accelerator.device.type == "cuda")


def noised_inputs(run, names, epoch, moments):
    """Latents (drawn from the VAE posterior), noise and timesteps of a micro-batch, each sample from its own seed."""
    import torch

    cfg, vae = run.cfg, run.pipe.vae
    mean, std = moments
    draws = [data.sample_draws(cfg.SEED, epoch, name, tuple(mean.shape[1:]),
                               run.noise_scheduler.config.num_train_timesteps) for name in names]
    timesteps, noise, posterior, offset = (torch.stack(x).to(mean.device) for x in zip(*draws))
    latents = (mean.float() + std.float() * posterior) * vae.config.scaling_factor
    if cfg.NOISE_OFFSET:
        noise = noise + cfg.NOISE_OFFSET * offset
    return latents, noise, timesteps.flatten()


def micro_loss(run, batch, epoch):
    """Per-sample losses of one micro-batch."""
    import torch

    cfg, items, index = run.cfg, run.items, batch["index"]
    if "mean" in run.cache:  # row i, or row n + i for its mirror image
        row = [i + len(items) * (cfg.RANDOM_FLIP and data.flips(cfg.SEED, epoch, items[i][0])) for i in index]
        moments = run.cache["mean"][row], run.cache["std"][row]
    else:
        with torch.no_grad():
            pixels = batch["pixels"].to(run.accelerator.device, non_blocking=True)
            moments = lora.posterior_moments(run.pipe.vae, pixels)
    if "text" in run.cache:
        text_embeddings = run.cache["text"][index]
    else:
        with torch.set_grad_enabled(cfg.TRAIN_TEXT_ENCODER):
            text_embeddings = embed(run, batch["input_ids"])
    latents, noise, timesteps = noised_inputs(run, [items[i][0] for i in index], epoch, moments)
    return lora.diffusion_loss(run.prepared[0], run.noise_scheduler, latents, noise, timesteps, text_embeddings,
                               cfg.SNR_GAMMA)


def accumulate(run, batch, epoch):
    """One micro-batch forward and backward inside accelerate's accumulate(): on the last of a step (accelerate
    counts them, and averages gradients across processes only then) the clipped optimizer step."""
    accelerator, cfg = run.accelerator, run.cfg
    with accelerator.accumulate(*run.prepared):
        loss = micro_loss(run, batch, epoch)
        accelerator.backward(loss.mean())  # accelerate divides by GRAD_ACCUM
        if accelerator.sync_gradients and cfg.MAX_GRAD_NORM > 0:
            accelerator.clip_grad_norm_(run.params, cfg.MAX_GRAD_NORM)
        run.optimizer.step()
        run.lr_scheduler.step()  # not when the fp16 grad scaler skipped the step (accelerate checks)
        run.optimizer.zero_grad(set_to_none=True)
    return loss.detach()


# ----------------------------------------------------------------------------------------------------------------------
# the run: epochs, logs, checkpoints, validation


def run_epoch(run, plan, epoch, step, bar):
    """This epoch's optimizer steps from `step` to the epoch's end or STOP_AT_STEP; returns the step reached."""
    import torch

    cfg, accelerator = run.cfg, run.accelerator
    steps = data.epoch_steps(len(run.items), cfg.SEED, epoch, cfg.TRAIN_BATCH_SIZE, cfg.GRAD_ACCUM,
                             accelerator.num_processes)
    first = step - epoch * plan.steps_per_epoch
    todo = steps[first:first + plan.stop_at - step]
    batches = micro_batches(run, epoch, todo)
    for _ in todo:
        losses = [accumulate(run, next(batches), epoch) for _ in range(cfg.GRAD_ACCUM)]
        step += 1
        loss = accelerator.reduce(torch.cat(losses).mean(), reduction="mean").item()  # waits for the step
        run.step_ends.append(time.perf_counter())
        lr = run.lr_scheduler.get_last_lr()[0]
        accelerator.log({"epoch": epoch, "loss": loss, "lr": lr}, step=step)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", epoch=epoch)
        if step % cfg.CHECKPOINT_EVERY == 0 or step == plan.stop_at:
            checkpoints.save_checkpoint(run.accelerator, run.out_dir, step, run.record, cfg.KEEP_CHECKPOINTS)
    return step


def train_epochs(run, plan, step):
    """From `step` (0, or the resumed checkpoint's) to the end or STOP_AT_STEP, a validation strip after each
    VALIDATION_EVERY-th complete epoch; returns the step reached."""
    cfg, accelerator = run.cfg, run.accelerator
    bar = progress_bar(total=plan.max_steps, initial=step, unit="step", desc="LoRA", dynamic_ncols=True,
                       disable=not (cfg.PROGRESS and accelerator.is_main_process))
    prompts = list(cfg.VALIDATION_PROMPTS) or [caption for _, _, caption in run.items[:cfg.VALIDATION_N]]
    for model in run.prepared:
        model.train()
    for epoch in range(step // plan.steps_per_epoch, plan.num_epochs):
        if step >= plan.stop_at:
            break
        step = run_epoch(run, plan, epoch, step, bar)
        complete = step == (epoch + 1) * plan.steps_per_epoch
        if cfg.VALIDATION and accelerator.is_main_process and complete and (epoch + 1) % cfg.VALIDATION_EVERY == 0:
            started = time.perf_counter()
            validation_strip(run, prompts, run.out_dir / "validation" / f"epoch_{epoch + 1:03d}.png")
            run.strip_seconds.append(time.perf_counter() - started)
    bar.close()
    return step


def validation_strip(run, prompts, path):
    """One image per fixed prompt (fixed seeds), side by side, written atomically as a PNG."""
    import torch

    cfg, accelerator = run.cfg, run.accelerator
    width, height = cfg.RESOLUTION
    images = []
    with torch.random.fork_rng(devices=[]), torch.no_grad(), accelerator.autocast():
        for i, prompt in enumerate(prompts):
            generator = torch.Generator(accelerator.device).manual_seed(row_seed(cfg.SEED, f"validation:{i}"))
            images.append(run.pipe(prompt, height=height, width=width, num_inference_steps=cfg.VALIDATION_STEPS,
                                   generator=generator).images[0])
    checkpoints.save_strip(images, path)


def announce(run, plan, report):
    cfg, items, tokenizer = run.cfg, run.items, run.pipe.tokenizer
    print(data.describe_captions(report, len(items)))
    print(f"{len(items)} banners, {plan.steps_per_epoch} steps/epoch of {cfg.TRAIN_BATCH_SIZE} x {cfg.GRAD_ACCUM} x "
          f"{run.accelerator.num_processes} process(es), {plan.max_steps} steps ({plan.num_epochs} epochs); latents "
          f"{'encoded once' if plan.cache_latents else 'encoded every step'}, text embeddings "
          f"{'encoded once' if plan.cache_text else 'every step'}"
          f"{'; torch.compile (the first steps compile)' if cfg.COMPILE else ''}", flush=True)
    # said once here instead of a library warning per batch
    long = sum(len(ids) > tokenizer.model_max_length for ids in tokenizer([c for _, _, c in items]).input_ids)
    if long:
        print(f"{long} of {len(items)} captions are longer than {tokenizer.model_max_length} CLIP tokens: the text "
              f"encoder sees their beginning", flush=True)


def train(cfg):
    from training import loss_log

    check_settings(cfg)
    out_dir = Path(cfg.OUT_DIR)
    # the inputs, every banner decoded once: bad input stops here, before any model loads
    items, report = data.load_train_set(cfg.DATA_DIR, cfg.CAPTIONS, cfg.CAPTION_FALLBACK)
    accelerator = checkpoints.make_accelerator(out_dir, cfg.MIXED_PRECISION, cfg.GRAD_ACCUM, cfg.CPU_THREADS)
    settings, digest = checkpoints.fingerprint(cfg, data.inputs_fingerprint(items), accelerator.num_processes,
                                               checkpoints.precision_of(accelerator), _NOT_FINGERPRINTED)
    if checkpoints.is_up_to_date(out_dir, lora.SETTINGS_FILE, digest):
        accelerator.print(f"{out_dir / lora.LORA_FILE} is already trained with these settings and inputs: nothing "
                          f"to do")
        return out_dir / lora.LORA_FILE
    saved = files.read_json(out_dir / lora.SETTINGS_FILE, {})
    resume_from, step = resume_point(cfg, out_dir, saved, settings, digest)
    plan = plan_steps(cfg, len(items), accelerator.num_processes)
    run = Run(cfg, accelerator, out_dir, items, {"fingerprint": digest, "settings": settings})
    build(run, plan)
    if resume_from is not None:
        # optimizer, LR schedule, grad scaler, every process's RNG and accumulation count; the LoRA through the hook
        accelerator.load_state(str(resume_from))
        accelerator.print(f"resumed from {resume_from} (step {step}, epoch {step // plan.steps_per_epoch})",
                          flush=True)
    if accelerator.is_main_process:
        announce(run, plan, report)
        loss_log.restart(out_dir / checkpoints.LOSSES_FILE, step)
    accelerator.init_trackers("lora")
    started = time.time()
    step = train_epochs(run, plan, step)
    return finish(run, plan, step, report, time.time() - started)


def finish(run, plan, step, report, seconds):
    """The speed line, then (at the last step) the LoRA and train_settings.json; None when STOP_AT_STEP stopped it."""
    from importlib.metadata import version

    cfg, accelerator, out_dir = run.cfg, run.accelerator, run.out_dir
    world = accelerator.num_processes
    speed = measured_speed(run.step_ends, cfg.TRAIN_BATCH_SIZE * cfg.GRAD_ACCUM * world, run.strip_seconds)
    if speed:
        accelerator.print(f"{len(run.step_ends)} steps in {seconds:.0f} s; after the first: "
                          f"{speed['steps_per_s']:.2f} steps/s, {speed['images_per_s']:.1f} images/s"
                          + (f"; a validation strip {speed['seconds_per_strip']:.1f} s" if run.strip_seconds else ""),
                          flush=True)
    accelerator.wait_for_everyone()
    lora_path = out_dir / lora.LORA_FILE if step >= plan.max_steps else None
    if lora_path is None:
        accelerator.print(f"stopped at step {step} of {plan.max_steps} (STOP_AT_STEP): bash run/train_sd.sh "
                          f"--RESUME=latest continues", flush=True)
    elif accelerator.is_main_process:
        lora.save_lora(out_dir, run.models)
        schedule = run.noise_scheduler.config
        files.write_json(out_dir / lora.SETTINGS_FILE, {
            **run.record, "knobs": cfg.as_dict(), "lora": lora.LORA_FILE,
            "lora_sha256": files.file_hash(lora_path), "steps": plan.max_steps, "epochs": plan.num_epochs,
            "effective_batch": cfg.TRAIN_BATCH_SIZE * cfg.GRAD_ACCUM * world, "captions": report,
            "noise_schedule": {"NOISE_SCHEDULE": cfg.NOISE_SCHEDULE, **{k: schedule[k] for k in (
                "prediction_type", "rescale_betas_zero_snr", "timestep_spacing")}},
            "versions": {p: version(p) for p in ("torch", "diffusers", "transformers", "peft", "accelerate")},
            "seconds_this_run": round(seconds, 1), "speed_this_run": speed})
        print(f"LoRA -> {lora_path} ({plan.max_steps} steps; pipe.load_lora_weights({str(out_dir)!r}))", flush=True)
    accelerator.wait_for_everyone()
    accelerator.end_training()  # closes the loss log
    return lora_path


def measured_speed(step_ends, images_per_step, strip_seconds=()):
    """Optimizer steps/s and images/s between the end of the first step (model warm-up, cuDNN autotuning, compiling)
    and the end of the last (the strips and checkpoints in between included), and the mean time of a validation strip;
    None under 3 steps."""
    if len(step_ends) < 3:
        return None
    steps_per_s = (len(step_ends) - 1) / (step_ends[-1] - step_ends[0])
    speed = {"steps_per_s": round(steps_per_s, 4), "images_per_s": round(steps_per_s * images_per_step, 3),
             "steps_timed": len(step_ends) - 1}
    if strip_seconds:
        speed["seconds_per_strip"] = round(sum(strip_seconds) / len(strip_seconds), 2)
    return speed


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    rank, _, _ = devices.process_info()
    if rank == 0:
        knobs.announce_smoke("LoRA training", cfg.SMOKE)
    out_dir = Path(cfg.OUT_DIR)
    new_folder = not out_dir.exists()
    files.check_writable(out_dir)  # a read-only folder: one line, before the lock and any model
    # one lock per output folder, taken by the launcher's first process (the others share its run)
    lock = files.FolderLock(out_dir) if rank == 0 else contextlib.nullcontext()
    try:
        # only errors from transformers/diffusers while training (their per-call warnings would bury the progress
        # bar), restored afterwards: a caller in the same process keeps its own settings
        with lock, quiet_libraries():
            return train(cfg)
    except BaseException:
        if new_folder:  # a failed run leaves no empty folder behind (what it wrote, it keeps)
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise


if __name__ == "__main__":
    knobs.run_main(main)
