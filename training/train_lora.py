"""
LoRA fine-tuning of Stable Diffusion 2.1 on the captioned training banners (Method 2's model).

Reads $DATA_DIR/train/{info.csv, images/, llava_caption.json} (a banner without a VLM caption falls back to its
translated copy in info_trans.csv, else info.csv; the run says how many) and writes into OUT_DIR:
    pytorch_lora_weights.safetensors  the LoRA in diffusers' format (pipe.load_lora_weights(OUT_DIR))
    train_settings.json               every knob, the input hashes and a fingerprint: is this LoRA up to date?
    losses.csv                        step, epoch, loss, lr (+ TensorBoard in tb/ when tensorboard is installed)
    validation/epoch_NNN.png          fixed prompts, one strip per epoch
    checkpoints/step_NNNNNN/          every CHECKPOINT_EVERY steps, the last KEEP_CHECKPOINTS kept; a rerun continues
                                      from the newest exactly (RESUME=latest)

The defaults are the seed's recipe (rank 4 on the UNet attention projections and the text encoder, 512 px, center
crop, flip, RandAugment, AdamW 1e-4 cosine, 50 epochs, fp16, seed 1337) with its effective batch of 8 done as batch 8 x
accumulation 1 instead of 2 x 4: the same images per update, 4x the speed, 13 GiB (H200, UNet alone; see
training/README.md).

    bash run/train_sd.sh [--NAME=value ...]          (accelerate launch; several GPUs: accelerate config first)
"""
import contextlib
import math
import os
import time
from pathlib import Path

import models
from core import files, knobs
from core.progress import progress as progress_bar
from core.progress import quiet_libraries
from core.seeds import row_seed
from training import checkpoint, data, lora

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
MIXED_PRECISION = "fp16"  # fp16 | bf16 | no on a GPU (frozen weights in that dtype, LoRA in fp32); the CPU runs fp32
GRADIENT_CHECKPOINTING = False  # recompute activations: less memory, about half the speed
COMPILE = False  # torch.compile the UNet (and the VAE encoder when it runs every step): faster steps after the first
SNR_GAMMA = 0.0  # Min-SNR loss weighting (5.0 is the paper's); 0 = off
NOISE_OFFSET = 0.0  # noise offset (e.g. 0.05: darker darks, brighter brights); 0 = off
SEED = 1337  # order, augmentation, noise and timesteps all derive from it, per sample
CACHE_LATENTS = True  # encode once what is not random: images if RANDAUGMENT=0 (and mirrors), captions if text frozen
CHECKPOINT_EVERY = 500  # steps between checkpoints (one is also written at the end and at STOP_AT_STEP)
KEEP_CHECKPOINTS = 3  # keep the newest K checkpoints
RESUME = "latest"  # latest = continue from the newest checkpoint in OUT_DIR if any; no = start fresh; or a folder
STOP_AT_STEP = 0  # stop after this step with a checkpoint (train in slices; the LR schedule stays the full run's)
VALIDATION = True  # a strip of images from VALIDATION_PROMPTS after every VALIDATION_EVERY epochs
VALIDATION_EVERY = 1  # epochs between validation strips
VALIDATION_PROMPTS = ()  # fixed prompts; () = the captions of the first VALIDATION_N training banners
VALIDATION_N = 4  # prompts in the strip when VALIDATION_PROMPTS is empty
VALIDATION_STEPS = 25  # DDIM steps per validation image
DATALOADER_WORKERS = 4  # image decoding/augmentation processes (0 = in the training process)
CPU_THREADS = 0  # torch threads on the CPU; 0 = torch's default
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

    if cfg.LR_SCHEDULER not in [t.value for t in SchedulerType]:
        raise knobs.InputError(f"LR_SCHEDULER must be one of {[t.value for t in SchedulerType]}, got "
                               f"{cfg.LR_SCHEDULER!r}")
    if cfg.PREDICTION_TYPE not in ("", "epsilon", "v_prediction"):
        raise knobs.InputError(f"PREDICTION_TYPE must be '', epsilon or v_prediction, got {cfg.PREDICTION_TYPE!r}")
    if cfg.MIXED_PRECISION not in ("fp16", "bf16", "no"):
        raise knobs.InputError(f"MIXED_PRECISION must be fp16, bf16 or no, got {cfg.MIXED_PRECISION!r}")
    if cfg.USE_8BIT_ADAM:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise knobs.InputError("USE_8BIT_ADAM=1 needs bitsandbytes (pip install bitsandbytes)") from None


def fingerprint(cfg, inputs, world_size, precision):
    """(settings that shape the weights, their sha256): knobs, input hashes, process count, SMOKE."""
    import hashlib
    import json

    settings = {k: v for k, v in cfg.as_dict().items() if k not in _NOT_FINGERPRINTED}
    settings.update(inputs, world_size=world_size, precision=precision, smoke=knobs.smoke_enabled())
    text = json.dumps(settings, sort_keys=True, default=list)
    return json.loads(text), hashlib.sha256(text.encode()).hexdigest()


def settings_diff(saved, current):
    return [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]


def expected_fingerprint(cfg, world_size=1, precision=None):
    """The fingerprint a finished run of this config writes (cfg = knobs.configure(train_lora, argv)); precision is
    what the run used: 'no' on the CPU, else MIXED_PRECISION. Reads and checks the inputs, loads no model."""
    import torch

    items, _ = data.load_train_set(cfg.DATA_DIR, cfg.CAPTIONS, cfg.CAPTION_FALLBACK)
    precision = precision or (cfg.MIXED_PRECISION if torch.cuda.is_available() else "no")
    return fingerprint(cfg, data.inputs_fingerprint(items), world_size, precision)[1]


def is_up_to_date(out_dir, expected):
    """out_dir holds a finished LoRA whose run had the fingerprint `expected` (a rerun then has nothing to do)."""
    saved = files.read_json(Path(out_dir) / lora.SETTINGS_FILE, {})
    return saved.get("fingerprint") == expected and (Path(out_dir) / lora.LORA_FILE).is_file()


# ----------------------------------------------------------------------------------------------------------------------
# models


def load_models(model, weight_dtype, device, prediction_type=""):
    """tokenizer, text encoder, VAE, UNet (frozen, in weight_dtype) and the training noise scheduler."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    def load(cls, sub, **kw):
        return models.load(cls.from_pretrained, model, "sd21", subfolder=sub, **kw)

    tokenizer = load(CLIPTokenizer, "tokenizer")
    scheduler = load(DDPMScheduler, "scheduler")
    if prediction_type:
        scheduler.register_to_config(prediction_type=prediction_type)
    text_encoder = load(CLIPTextModel, "text_encoder", dtype=weight_dtype)  # transformers 5 says dtype
    vae = load(AutoencoderKL, "vae", torch_dtype=weight_dtype)
    unet = load(UNet2DConditionModel, "unet", torch_dtype=weight_dtype)
    text_encoder, vae, unet = (m.to(device).requires_grad_(False) for m in (text_encoder, vae, unet))
    return tokenizer, text_encoder, vae, unet, scheduler


# ----------------------------------------------------------------------------------------------------------------------
# the noised inputs of a micro-batch


def noised_inputs(names, epoch, moments, cfg, scheduler, latent_shape, scaling_factor):
    """Latents (drawn from the VAE posterior), noise and timesteps of a micro-batch, each sample from its own seed."""
    import torch

    mean, std = moments
    draws = [data.sample_draws(cfg.SEED, epoch, name, latent_shape, scheduler.config.num_train_timesteps)
             for name in names]
    timesteps, noise, posterior, offset = (torch.stack(x).to(mean.device) for x in zip(*draws))
    latents = (mean.float() + std.float() * posterior) * scaling_factor
    if cfg.NOISE_OFFSET:
        noise = noise + cfg.NOISE_OFFSET * offset
    return latents, noise, timesteps.flatten()


# ----------------------------------------------------------------------------------------------------------------------
# logs and validation


class LossLog:
    """losses.csv (step, epoch, loss, lr), and TensorBoard when installed. A resumed run drops the rows after its
    checkpoint, so the file always describes one run."""

    def __init__(self, out_dir, resume_step):
        self.path = Path(out_dir) / "losses.csv"
        rows = []
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines()[1:]:
                parts = line.split(",")
                if len(parts) == 4 and parts[0].isdigit() and int(parts[0]) <= resume_step:
                    rows.append(line + "\n")
        files.atomic_write(self.path, "step,epoch,loss,lr\n" + "".join(rows))
        self.file = open(self.path, "a", encoding="utf-8")
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(out_dir) / "tb"), purge_step=resume_step + 1)
        except ImportError:
            pass

    def log(self, step, epoch, loss, lr):
        self.file.write(f"{step},{epoch},{loss:.6f},{lr:.6g}\n")
        self.file.flush()
        if self.tb:
            self.tb.add_scalar("train/loss", loss, step)
            self.tb.add_scalar("train/lr", lr, step)

    def close(self):
        self.file.close()
        if self.tb:
            self.tb.close()


def validation_strip(cfg, accelerator, tokenizer, text_encoder, vae, unet, scheduler, prompts, path):
    """One image per fixed prompt (fixed seeds), side by side, written atomically as a PNG."""
    import io

    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from PIL import Image

    width, height = cfg.RESOLUTION
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler.from_config(scheduler.config), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    images = []
    with torch.random.fork_rng(devices=[]), torch.no_grad(), accelerator.autocast():
        for i, prompt in enumerate(prompts):
            generator = torch.Generator(accelerator.device).manual_seed(row_seed(cfg.SEED, f"validation:{i}"))
            images.append(pipe(prompt, height=height, width=width, num_inference_steps=cfg.VALIDATION_STEPS,
                               generator=generator).images[0])
    strip = Image.new("RGB", (width * len(images), height))
    for i, image in enumerate(images):
        strip.paste(image, (i * width, 0))
    buf = io.BytesIO()
    strip.save(buf, format="PNG")
    files.atomic_write(path, buf.getvalue())


# ----------------------------------------------------------------------------------------------------------------------
# training


def make_optimizer(cfg, params):
    import torch

    if cfg.USE_8BIT_ADAM:
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=cfg.LEARNING_RATE, weight_decay=cfg.ADAM_WEIGHT_DECAY)
    return torch.optim.AdamW(params, lr=cfg.LEARNING_RATE, weight_decay=cfg.ADAM_WEIGHT_DECAY)


def resume_point(cfg, out_dir, settings, digest):
    """The checkpoint folder to continue from (or None), after checking it was made with these settings."""
    found = checkpoint.list_checkpoints(out_dir)
    if cfg.RESUME in ("", "no"):
        if found:
            raise knobs.InputError(f"{out_dir} already has checkpoints (newest {found[-1][1].name}): --RESUME=latest "
                                   f"continues them, or pass another --OUT_DIR")
        return None
    folder = found[-1][1] if cfg.RESUME == "latest" and found else None
    if cfg.RESUME != "latest":
        folder = Path(cfg.RESUME)
        if not (folder / "state.pt").is_file():
            raise knobs.InputError(f"RESUME={cfg.RESUME}: not a checkpoint folder (no state.pt)")
    if folder is not None:
        saved = checkpoint.read_state(folder)
        if saved.get("fingerprint") != digest:
            raise knobs.InputError(f"{folder} was made with other settings or inputs (differ: "
                                   f"{', '.join(settings_diff(saved.get('settings', {}), settings))}): pass another "
                                   f"--OUT_DIR, or the same settings")
    return folder


def encode_once(dataset, vae, embed, device, batch_size, latents, text, progress):
    """The VAE posterior of every banner and of its mirror image (rows n + i), and/or the text embedding of every
    caption, computed once: then an epoch costs only the UNet (and the text encoder when it is trained)."""
    import torch

    n = len(dataset)
    means, stds, texts = ([], []), ([], []), []  # [plain, mirrored] chunks
    with torch.no_grad():
        for start in progress_bar(range(0, n, batch_size), desc="encoding once", unit="batch",
                          disable=not (progress and (latents or text))):
            index = list(range(start, min(start + batch_size, n)))
            if latents:
                pixels = torch.stack([dataset.pixels(i, 0, flip=False) for i in index]).to(device)
                for k, view in enumerate((pixels, pixels.flip(-1))):
                    mean, std = lora.posterior_moments(vae, view)
                    means[k].append(mean)
                    stds[k].append(std)
            if text:
                texts.append(embed(dataset.input_ids(index)))
    cache = {"text": torch.cat(texts)} if text else {}
    if latents:
        cache.update(mean=torch.cat(means[0] + means[1]), std=torch.cat(stds[0] + stds[1]))
    return cache


def train(cfg):
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler

    check_settings(cfg)
    out_dir = files.check_writable(cfg.OUT_DIR)
    # the inputs, every banner decoded once: bad input stops here, before any model loads
    items, report = data.load_train_set(cfg.DATA_DIR, cfg.CAPTIONS, cfg.CAPTION_FALLBACK)
    inputs = data.inputs_fingerprint(items)

    cpu = not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision="no" if cpu else cfg.MIXED_PRECISION, cpu=cpu)
    main_process, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    if cfg.CPU_THREADS and cpu:
        torch.set_num_threads(cfg.CPU_THREADS)
    settings, digest = fingerprint(cfg, inputs, world, accelerator.mixed_precision)
    saved = files.read_json(out_dir / lora.SETTINGS_FILE, {})
    if is_up_to_date(out_dir, digest):
        if main_process:
            print(f"{out_dir / lora.LORA_FILE} is already trained with these settings and inputs: nothing to do")
        return out_dir / lora.LORA_FILE
    if saved and cfg.RESUME != "no" and not checkpoint.list_checkpoints(out_dir):
        raise knobs.InputError(f"{out_dir} holds a LoRA trained with other settings or inputs (differ: "
                               f"{', '.join(settings_diff(saved.get('settings', {}), settings))}): pass another "
                               f"--OUT_DIR, or --RESUME=no to train anew over it")
    resume_from = resume_point(cfg, out_dir, settings, digest)

    steps_per_epoch = len(data.epoch_steps(len(items), 0, 0, cfg.TRAIN_BATCH_SIZE, cfg.GRAD_ACCUM, world))
    if steps_per_epoch == 0:
        raise knobs.InputError(f"{len(items)} banners are fewer than one step's batch (TRAIN_BATCH_SIZE x GRAD_ACCUM "
                               f"x processes = {cfg.TRAIN_BATCH_SIZE * cfg.GRAD_ACCUM * world})")
    max_steps = cfg.MAX_STEPS or cfg.NUM_EPOCHS * steps_per_epoch
    num_epochs = math.ceil(max_steps / steps_per_epoch)
    cache_latents = cfg.CACHE_LATENTS and data.fixed_pixels(cfg)
    cache_text = cfg.CACHE_LATENTS and not cfg.TRAIN_TEXT_ENCODER
    if main_process:
        print(data.describe_captions(report, len(items)))
        print(f"{len(items)} banners, {steps_per_epoch} steps/epoch of {cfg.TRAIN_BATCH_SIZE} x {cfg.GRAD_ACCUM} x "
              f"{world} process(es), {max_steps} steps ({num_epochs} epochs); latents "
              f"{'encoded once' if cache_latents else 'encoded every step'}, text embeddings "
              f"{'encoded once' if cache_text else 'every step'}"
              f"{'; torch.compile (the first steps compile)' if cfg.COMPILE else ''}", flush=True)

    set_seed(cfg.SEED)  # the LoRA's initial weights: the same in every process and every fresh run
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    tokenizer, text_encoder, vae, unet, scheduler = load_models(cfg.MODEL, weight_dtype, accelerator.device,
                                                                cfg.PREDICTION_TYPE)
    models = lora.add_lora(unet, text_encoder if cfg.TRAIN_TEXT_ENCODER else None, cfg.LORA_RANK)
    if main_process:  # said once here instead of a library warning per batch
        long = sum(len(ids) > tokenizer.model_max_length for ids in tokenizer([c for _, _, c in items]).input_ids)
        if long:
            print(f"{long} of {len(items)} captions are longer than {tokenizer.model_max_length} CLIP tokens: the "
                  f"text encoder sees their beginning", flush=True)
    if cfg.GRADIENT_CHECKPOINTING:
        lora.checkpoint_activations(models)
    if cfg.COMPILE:
        lora.compile_models(unet, None if cache_latents else vae)
    optimizer = make_optimizer(cfg, list(checkpoint.trainable(models).values()))
    lr_scheduler = get_scheduler(cfg.LR_SCHEDULER, optimizer, num_warmup_steps=cfg.LR_WARMUP_STEPS,
                                 num_training_steps=max_steps)
    # the scheduler stays outside prepare(): accelerate would step it once per process
    wrapped = accelerator.prepare(*models.values(), optimizer)
    train_unet, train_text = wrapped[0], wrapped[1] if cfg.TRAIN_TEXT_ENCODER else text_encoder
    optimizer = wrapped[-1]

    state = {"step": 0, "epoch": 0, "step_in_epoch": 0}
    if resume_from is not None:
        state = checkpoint.load(resume_from, accelerator, models, optimizer, lr_scheduler)
        if main_process:
            print(f"resumed from {resume_from} (step {state['step']}, epoch {state['epoch']})", flush=True)

    dataset = data.BannerDataset(items, tokenizer, data.make_transform(cfg.RESOLUTION, cfg.CENTER_CROP,
                                                                       cfg.RANDAUGMENT), cfg.SEED, cfg.RANDOM_FLIP)
    width, height = cfg.RESOLUTION
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    latent_shape = (vae.config.latent_channels, height // scale, width // scale)

    def embed(input_ids):
        return train_text(input_ids.to(accelerator.device), return_dict=False)[0]

    cache = encode_once(dataset, vae, embed, accelerator.device, cfg.TRAIN_BATCH_SIZE, cache_latents, cache_text,
                        cfg.PROGRESS and main_process)

    def micro_batches(epoch, steps):
        """This process's micro-batches of the given steps, in order."""
        mine = [step[a * world + rank] for step in steps for a in range(cfg.GRAD_ACCUM)]
        if cache_latents:  # no image to load
            for index in mine:
                yield {"index": index, "input_ids": dataset.input_ids(index)}
            return
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=[[(i, epoch) for i in b] for b in mine],
                                             num_workers=cfg.DATALOADER_WORKERS, collate_fn=data.collate,
                                             pin_memory=not cpu)
        yield from loader

    def micro_loss(batch, epoch):
        index = batch["index"]
        names = [items[i][0] for i in index]
        if cache_latents:  # row i, or row n + i for its mirror image
            row = [i + len(items) * (cfg.RANDOM_FLIP and data.flips(cfg.SEED, epoch, items[i][0])) for i in index]
            moments = cache["mean"][row], cache["std"][row]
        else:
            with torch.no_grad():
                moments = lora.posterior_moments(vae, batch["pixels"].to(accelerator.device, non_blocking=True))
        if cache_text:
            text_embeddings = cache["text"][index]
        else:
            with contextlib.nullcontext() if cfg.TRAIN_TEXT_ENCODER else torch.no_grad():
                text_embeddings = embed(batch["input_ids"])
        latents, noise, timesteps = noised_inputs(names, epoch, moments, cfg, scheduler, latent_shape,
                                                  vae.config.scaling_factor)
        return lora.diffusion_loss(train_unet, scheduler, latents, noise, timesteps, text_embeddings, cfg.SNR_GAMMA)

    prompts = list(cfg.VALIDATION_PROMPTS) or [caption for _, _, caption in items[:cfg.VALIDATION_N]]
    log = LossLog(out_dir, state["step"]) if main_process else None
    bar = progress_bar(total=max_steps, initial=state["step"], unit="step", desc="LoRA", dynamic_ncols=True,
               disable=not (cfg.PROGRESS and main_process))
    params = list(checkpoint.trainable(models).values())
    step, stop_at = state["step"], min(cfg.STOP_AT_STEP or max_steps, max_steps)
    train_unet.train()
    if cfg.TRAIN_TEXT_ENCODER:
        train_text.train()
    started = time.time()
    step_ends = []  # perf_counter after each optimizer step of this run: the speed after the first (warm-up) step
    strip_seconds = []  # each validation strip's time (the recipe makes one per epoch: 50)
    for epoch in range(state["epoch"], num_epochs):
        steps = data.epoch_steps(len(items), cfg.SEED, epoch, cfg.TRAIN_BATCH_SIZE, cfg.GRAD_ACCUM, world)
        first = state["step_in_epoch"] if epoch == state["epoch"] else 0
        batches = micro_batches(epoch, steps[first:stop_at - step + first])
        in_epoch = first
        while in_epoch < len(steps) and step < stop_at:
            losses = []
            for a in range(cfg.GRAD_ACCUM):
                # gradients are averaged across processes only on the last micro-batch of a step
                with contextlib.ExitStack() as no_sync:
                    if a < cfg.GRAD_ACCUM - 1:
                        for model in wrapped[:-1]:
                            no_sync.enter_context(accelerator.no_sync(model))
                    loss = micro_loss(next(batches), epoch)
                    accelerator.backward(loss.mean() / cfg.GRAD_ACCUM)
                losses.append(loss.detach())
            if cfg.MAX_GRAD_NORM > 0:
                accelerator.clip_grad_norm_(params, cfg.MAX_GRAD_NORM)
            optimizer.step()
            if not accelerator.optimizer_step_was_skipped:  # fp16 overflow: the scaler skipped this step
                lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_value = accelerator.reduce(torch.cat(losses).mean(), reduction="mean").item()  # waits for the step
            step_ends.append(time.perf_counter())
            lr = lr_scheduler.get_last_lr()[0]
            if main_process:
                log.log(step, epoch, loss_value, lr)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", epoch=epoch)
            in_epoch += 1
            done_epoch = in_epoch == len(steps)
            if step % cfg.CHECKPOINT_EVERY == 0 or step == stop_at:
                checkpoint.save(accelerator, out_dir, models, optimizer, lr_scheduler,
                                {"step": step, "epoch": epoch + done_epoch, "step_in_epoch": 0 if done_epoch else
                                 in_epoch, "fingerprint": digest, "settings": settings},
                                cfg.KEEP_CHECKPOINTS)
        if cfg.VALIDATION and main_process and in_epoch == len(steps) and (epoch + 1) % cfg.VALIDATION_EVERY == 0:
            strip_started = time.perf_counter()
            validation_strip(cfg, accelerator, tokenizer, text_encoder, vae, unet, scheduler, prompts,
                             out_dir / "validation" / f"epoch_{epoch + 1:03d}.png")
            strip_seconds.append(time.perf_counter() - strip_started)
        if step >= stop_at:
            break
    bar.close()
    if log:
        log.close()
    speed = measured_speed(step_ends, cfg.TRAIN_BATCH_SIZE * cfg.GRAD_ACCUM * world, strip_seconds)
    if main_process and speed:
        print(f"{len(step_ends)} steps in {time.time() - started:.0f} s; after the first: {speed['steps_per_s']:.2f} "
              f"steps/s, {speed['images_per_s']:.1f} images/s"
              + (f"; a validation strip {speed['seconds_per_strip']:.1f} s" if strip_seconds else ""), flush=True)
    accelerator.wait_for_everyone()
    if step < max_steps:
        if main_process:
            print(f"stopped at step {step} of {max_steps} (STOP_AT_STEP): bash run/train_sd.sh --RESUME=latest "
                  f"continues", flush=True)
        return None
    lora_path = out_dir / lora.LORA_FILE
    if main_process:
        lora.save_lora(out_dir, models)
        files.write_json(out_dir / lora.SETTINGS_FILE, {
            "fingerprint": digest, "settings": settings, "knobs": cfg.as_dict(), "lora": lora.LORA_FILE,
            "lora_sha256": files.file_hash(lora_path), "steps": max_steps, "epochs": num_epochs,
            "effective_batch": cfg.TRAIN_BATCH_SIZE * cfg.GRAD_ACCUM * world, "captions": report,
            "versions": library_versions(), "seconds_this_run": round(time.time() - started, 1),
            "speed_this_run": speed})
        print(f"LoRA -> {lora_path} ({max_steps} steps; pipe.load_lora_weights({str(out_dir)!r}))", flush=True)
    accelerator.wait_for_everyone()
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


def library_versions():
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "diffusers", "transformers", "peft", "accelerate")}


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    knobs.announce_smoke("LoRA training")
    # one lock per output folder, taken by the launcher's first process (the others share its run)
    lock = files.FolderLock(cfg.OUT_DIR) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()
    # only errors from transformers/diffusers while training (their per-call warnings would bury the progress bar),
    # restored afterwards: a caller in the same process keeps its own settings
    with lock, quiet_libraries():
        return train(cfg)


if __name__ == "__main__":
    knobs.run_main(main)
