"""
Latent-consistency distillation of the banner model: a LoRA that lets SD 2.1 + the banner LoRA sample a banner in ~4
UNet evaluations without classifier-free guidance (Method 2's fast preset, config/method2_fast.py). The recipe is the
published LCM-LoRA one (Luo et al. 2023, "LCM-LoRA: A Universal Stable-Diffusion Acceleration Module"):

- teacher: SD 2.1 with the banner LoRA fused in (v-prediction), on the noise schedule that LoRA was trained with
  (its train_settings.json's NOISE_SCHEDULE: zero terminal SNR by default, what Method 2 samples with);
- skipping-step ODE solver: one DDIM step of the teacher from timestep t_n to t_n - k over NUM_DDIM_TIMESTEPS
  timesteps (k = 1000 / 50 = 20), so the consistency target is k steps away;
- guidance folded into the target: the teacher's step uses classifier-free guidance with a scale drawn per sample
  from [W_MIN, W_MAX], so the student samples guided images at guidance 1 (one UNet pass per step);
- the target is the student itself at t_n - k under stop-gradient (LCM-LoRA keeps no EMA copy);
- the consistency parametrisation c_skip(t) x + c_out(t) x0(t) (sigma_data 0.5, timesteps scaled by 10, as diffusers'
  LCMScheduler samples), and the pseudo-Huber loss.

The student is the same UNet with a new LoRA (rank LORA_RANK on the attention, feed-forward and ResNet layers);
the teacher is that UNet with the adapter switched off, so one UNet sits in memory. Latents (VAE posterior means of the
center-cropped banners) and caption embeddings are computed once; a step costs 4 UNet passes (student, teacher
conditional and unconditional, target) and one backward.

reads   $DATA_DIR/train/{info.csv, images/, llava_caption.json} (the training stage's data, captions as it uses them),
        MODEL and TEACHER_LORA (run/train_sd.sh's output folder)
writes  OUT_DIR/pytorch_lora_weights.safetensors  the consistency LoRA, diffusers format: it loads beside the banner
                                                  LoRA (inference/accel.py; config/method2_fast.py)
        OUT_DIR/distill_settings.json             knobs, inputs and a fingerprint (up to date? run/method2.sh asks)
        OUT_DIR/losses.csv                        step, epoch, loss, lr
        OUT_DIR/validation/step_NNNNNN.png        VALIDATION_N captions sampled in VALIDATION_STEPS LCM steps
        OUT_DIR/checkpoints/checkpoint_N/         accelerate's save_state (LoRA via the save hook, optimizer, LR
                                                  scheduler, RNG) every CHECKPOINT_EVERY steps; a rerun resumes exactly

    bash run/distill.sh [--NAME=value ...]          (accelerate launch; several GPUs: accelerate config first)
"""
import contextlib
import json
import time
from pathlib import Path

import model_facts
import models
from core import devices, files, knobs
from core.progress import progress as progress_bar
from core.progress import quiet_libraries
from core.seeds import row_seed
from training import checkpoints, data, lora

DATA_DIR = "data"  # the data folder (also from env DATA_DIR)
OUT_DIR = "outputs/lcm_lora_sd21"  # where the consistency LoRA, logs and checkpoints go (also from env OUT_DIR)
MODEL = models.SD21  # the banner LoRA's base model: hub id[@revision] or local folder
TEACHER_LORA = "outputs/lora_sd21"  # the banner LoRA (run/train_sd.sh's folder); "" = distil the base model alone
TEACHER_LORA_SCALE = 1.0  # the banner LoRA's weight in the teacher (Method 2's LORA_SCALE)
NOISE_SCHEDULE = "trained"  # trained: the banner LoRA's own (its train_settings.json) | zero_snr_trailing | model
CAPTIONS = ""  # the VLM caption file; "" = $DATA_DIR/train/llava_caption.json (the training stage's rule)
RESOLUTION = (512, 512)  # training size (width, height), multiples of 8: the banner LoRA's
LORA_RANK = 64  # the consistency LoRA's rank (LCM-LoRA: 64)
NUM_DDIM_TIMESTEPS = 50  # the solver's timesteps: consecutive ones are 1000 / 50 = 20 apart (LCMScheduler's default)
W_MIN = 3.0  # the teacher's guidance scale is drawn per sample from [W_MIN, W_MAX] (pred = cond + w (cond - uncond))
W_MAX = 15.0
HUBER_C = 0.001  # pseudo-Huber loss constant
LEARNING_RATE = 1e-4  # AdamW, constant after LR_WARMUP_STEPS
LR_WARMUP_STEPS = 50
ADAM_WEIGHT_DECAY = 1e-2
MAX_GRAD_NORM = 1.0
MAX_STEPS = 2000  # optimizer steps
TRAIN_BATCH_SIZE = 8  # samples per step per process
MIXED_PRECISION = "fp16"  # fp16 | bf16 | no on a GPU (frozen weights in that dtype, LoRA in fp32); the CPU runs fp32
GRADIENT_CHECKPOINTING = False  # less memory, slower
SEED = 1337  # sample order, timesteps, noise and guidance scales of every step derive from (SEED, step)
CHECKPOINT_EVERY = 250  # steps between checkpoints (also one at the end and at STOP_AT_STEP)
KEEP_CHECKPOINTS = 2  # newest complete checkpoints kept (checkpoints.save_checkpoint rotates; 0 = all)
STOP_AT_STEP = 0  # stop after this step with a checkpoint (a rerun continues)
VALIDATION_EVERY = 500  # steps between validation strips (0 = only at the end)
VALIDATION_N = 4  # captions of the first training banners
VALIDATION_STEPS = 4  # LCM steps of a validation image
PROGRESS = True
SMOKE_OVERRIDES = dict(OUT_DIR="outputs/smoke/lcm_lora_sd21", TEACHER_LORA="outputs/smoke/lora_sd21",
                       RESOLUTION=(64, 32), LORA_RANK=4, MAX_STEPS=6, TRAIN_BATCH_SIZE=4, CHECKPOINT_EVERY=3,
                       VALIDATION_EVERY=0, VALIDATION_N=2, LR_WARMUP_STEPS=0)

SETTINGS_FILE = "distill_settings.json"
# knobs that do not change the weights: left out of the fingerprint
_NOT_FINGERPRINTED = ("DATA_DIR", "OUT_DIR", "CAPTIONS", "CHECKPOINT_EVERY", "KEEP_CHECKPOINTS", "STOP_AT_STEP",
                      "VALIDATION_EVERY", "VALIDATION_N", "VALIDATION_STEPS", "PROGRESS", "GRADIENT_CHECKPOINTING")
LCM_TARGETS = model_facts.LCM_LORA_TARGETS  # the published LCM-LoRA's layers (attention, feed-forward, ResNets)
SIGMA_DATA, TIMESTEP_SCALING = 0.5, 10.0  # the consistency boundary scalings (LCMScheduler's defaults)


# ----------------------------------------------------------------------------------------------------------------------
# the consistency model's arithmetic (tensors in, tensors out)


def boundary_scalings(timesteps):
    """c_skip, c_out of the consistency function at `timesteps` (c_skip -> 1, c_out -> 0 at t = 0)."""
    scaled = timesteps.float() * TIMESTEP_SCALING
    c_skip = SIGMA_DATA ** 2 / (scaled ** 2 + SIGMA_DATA ** 2)
    c_out = scaled / (scaled ** 2 + SIGMA_DATA ** 2) ** 0.5
    return c_skip.view(-1, 1, 1, 1), c_out.view(-1, 1, 1, 1)


def x0_and_eps(model_output, noisy, alpha, sigma, prediction_type):
    """The clean latents and the noise implied by the UNet's output at a noise level (alpha, sigma)."""
    if prediction_type == "v_prediction":
        return alpha * noisy - sigma * model_output, alpha * model_output + sigma * noisy
    if prediction_type == "epsilon":
        return (noisy - sigma * model_output) / alpha.clamp(min=1e-8), model_output
    raise knobs.InputError(f"prediction type {prediction_type!r}: distillation knows epsilon and v_prediction")


def pseudo_huber(pred, target, c):
    return (((pred.float() - target.float()) ** 2 + c ** 2).sqrt() - c).mean()


class Schedule:
    """alpha_t, sigma_t of the teacher's noise schedule and the solver's timesteps."""

    def __init__(self, scheduler_config, schedule, num_ddim_timesteps, device):
        import torch
        from diffusers import DDPMScheduler

        ddpm = DDPMScheduler.from_config(scheduler_config, **schedule)  # `schedule`: lora.schedule_for's values
        cumprod = ddpm.alphas_cumprod.to(device)
        self.alpha, self.sigma = cumprod.sqrt(), (1 - cumprod).sqrt()
        self.prediction_type = ddpm.config.prediction_type
        self.step = ddpm.config.num_train_timesteps // num_ddim_timesteps
        self.timesteps = (torch.arange(1, num_ddim_timesteps + 1) * self.step - 1).to(device)  # 19, 39, ..., 999

    def at(self, timesteps):
        return self.alpha[timesteps].view(-1, 1, 1, 1), self.sigma[timesteps].view(-1, 1, 1, 1)


def step_draws(cfg, step, n_items, latent_shape, n_timesteps, world):
    """Everything random about one optimizer step, from (SEED, step) alone: exact resume needs nothing else."""
    import torch

    g = torch.Generator().manual_seed(row_seed(cfg.SEED, f"distill:{step}"))
    batch = cfg.TRAIN_BATCH_SIZE * world
    index = torch.randperm(n_items, generator=g)[:batch] if n_items >= batch else torch.randint(n_items, (batch,),
                                                                                                generator=g)
    return {"index": index, "ddim_index": torch.randint(0, n_timesteps, (batch,), generator=g),
            "noise": torch.randn((batch, *latent_shape), generator=g),
            "w": cfg.W_MIN + (cfg.W_MAX - cfg.W_MIN) * torch.rand(batch, generator=g)}


def consistency_loss(unet, student, schedule, inputs, draws, huber_c):
    """The LCM-LoRA loss of one micro-batch; `unet` is the bare model (teacher = its adapters off), `student` the
    model the gradients flow through (accelerate's wrapper under several processes); `inputs`: (latents, caption
    embeddings, the empty prompt's embedding)."""
    import torch

    latents, text, uncond = inputs
    device = latents.device
    start = schedule.timesteps[draws["ddim_index"].to(device)]
    end = (start - schedule.step).clamp(min=0)
    noise, w = draws["noise"].to(device, latents.dtype), draws["w"].to(device).view(-1, 1, 1, 1)
    a_start, s_start = schedule.at(start)
    a_end, s_end = schedule.at(end)
    noisy = a_start * latents + s_start * noise
    skip_start, out_start = boundary_scalings(start)
    skip_end, out_end = boundary_scalings(end)
    kind = schedule.prediction_type
    x0, _ = x0_and_eps(student(noisy, start, text).sample.float(), noisy, a_start, s_start, kind)
    prediction = skip_start * noisy + out_start * x0
    with torch.no_grad():
        unet.disable_adapters()  # the teacher: the banner model without the consistency LoRA
        cond = x0_and_eps(unet(noisy, start, text).sample.float(), noisy, a_start, s_start, kind)
        free = x0_and_eps(unet(noisy, start, uncond.expand_as(text)).sample.float(), noisy, a_start, s_start, kind)
        unet.enable_adapters()
        x0_teacher, eps_teacher = (c + w * (c - u) for c, u in zip(cond, free))
        previous = (a_end * x0_teacher + s_end * eps_teacher).to(latents.dtype)  # the DDIM step t_n -> t_n - k
        x0_target, _ = x0_and_eps(unet(previous, end, text).sample.float(), previous, a_end, s_end, kind)
        target = skip_end * previous + out_end * x0_target
    return pseudo_huber(prediction, target, huber_c)


# ----------------------------------------------------------------------------------------------------------------------
# inputs, models and settings


def noise_schedule(cfg):
    """Scheduler config values of the teacher's noise schedule: what the banner LoRA was trained with (its
    train_settings.json), else the training stage's default; or the one NOISE_SCHEDULE names."""
    return lora.schedule_for(cfg.NOISE_SCHEDULE, cfg.TEACHER_LORA)[0]


def stage_files(cfg):
    """For run/method2.sh: what distillation reads and writes, the lock main() holds, the knobs that shape the LoRA."""
    train = Path(cfg.DATA_DIR) / "train"
    settings = {k: v for k, v in cfg.as_dict().items() if k not in _NOT_FINGERPRINTED}
    teacher = [Path(cfg.TEACHER_LORA)] if cfg.TEACHER_LORA else []
    return files.StageFiles(inputs=[train / "info.csv", train / "info_trans.csv", train / "images",
                                    data.caption_path(cfg.DATA_DIR, cfg.CAPTIONS), *teacher],
                            done=Path(cfg.OUT_DIR) / lora.LORA_FILE, settings=settings, set_aside=[Path(cfg.OUT_DIR)],
                            lock=files.FolderLock(cfg.OUT_DIR))


def teacher_inputs(cfg):
    """The banner LoRA file and its hash (part of the fingerprint: a retrained banner LoRA needs a new distillation)."""
    if not cfg.TEACHER_LORA:
        return None, {}
    path = Path(cfg.TEACHER_LORA)
    path = path / lora.LORA_FILE if path.is_dir() else path
    if not path.is_file():
        raise knobs.InputError(f"TEACHER_LORA: {path} not found (train the banner LoRA first: bash run/train_sd.sh)")
    return path, {"teacher_lora_sha256": files.file_hash(path)}


def load_teacher(cfg, teacher_file, weight_dtype, device):
    """SD 2.1 with the banner LoRA fused into the UNet and text encoder, frozen, in weight_dtype."""
    from diffusers import StableDiffusionPipeline

    pipe = models.load(StableDiffusionPipeline.from_pretrained, cfg.MODEL, "sd21", smoke=cfg.SMOKE,
                       dtype=weight_dtype, safety_checker=None, requires_safety_checker=False)
    if teacher_file is not None:
        with quiet_libraries():
            pipe.load_lora_weights(str(teacher_file.parent), weight_name=teacher_file.name, adapter_name="banners")
        pipe.fuse_lora(lora_scale=cfg.TEACHER_LORA_SCALE)
        pipe.unload_lora_weights()
    for model in (pipe.unet, pipe.text_encoder, pipe.vae):
        model.requires_grad_(False)
    return pipe.to(device)


def encode_inputs(cfg, pipe, items, accelerator):
    """VAE posterior means (scaled) of the center-cropped banners, their caption embeddings and the empty prompt's
    (every process encodes them all; the main one shows the progress bar)."""
    import torch

    device = accelerator.device
    dataset = data.BannerDataset(items, pipe.tokenizer, data.make_transform(cfg.RESOLUTION, True, False), cfg.SEED)
    latents, text = [], []
    with torch.no_grad():
        for start in progress_bar(range(0, len(items), cfg.TRAIN_BATCH_SIZE), desc="encoding once", unit="batch",
                                  disable=not (cfg.PROGRESS and accelerator.is_main_process)):
            index = list(range(start, min(start + cfg.TRAIN_BATCH_SIZE, len(items))))
            pixels = torch.stack([dataset.pixels(i, 0, flip=False) for i in index]).to(device)
            latents.append(lora.posterior_moments(pipe.vae, pixels)[0] * pipe.vae.config.scaling_factor)
            text.append(pipe.text_encoder(dataset.input_ids(index).to(device))[0])
        empty = pipe.tokenizer([""], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                               return_tensors="pt").input_ids
        uncond = pipe.text_encoder(empty.to(device))[0]
    return torch.cat(latents), torch.cat(text), uncond


# ----------------------------------------------------------------------------------------------------------------------
# accelerate: the trainer's setup, checkpoints and loss log (training/checkpoints.py)


def resume_point(out_dir, digest):
    """(newest checkpoint of a run with this fingerprint, its step), or (None, 0); one line if OUT_DIR holds another
    run's checkpoints."""
    found = checkpoints.list_checkpoints(out_dir)
    if not found:
        return None, 0
    progress = files.read_json(found[-1][1] / checkpoints.PROGRESS_FILE, {})
    if progress.get("fingerprint") != digest:
        raise knobs.InputError(f"{out_dir} holds checkpoints of a distillation with other settings or inputs: pass "
                               f"another --OUT_DIR or delete {Path(out_dir) / 'checkpoints'}")
    return found[-1][1], found[-1][0]


# ----------------------------------------------------------------------------------------------------------------------
# validation


def validation_strip(cfg, pipe, prompts, path):
    """The captions sampled in VALIDATION_STEPS LCM steps at guidance 1 with the consistency LoRA on: one PNG strip."""
    import torch
    from diffusers import LCMScheduler, StableDiffusionPipeline

    sampler = StableDiffusionPipeline(**{**pipe.components, "scheduler": LCMScheduler.from_config(
        pipe.scheduler.config, **noise_schedule(cfg), original_inference_steps=cfg.NUM_DDIM_TIMESTEPS)})
    sampler.set_progress_bar_config(disable=True)
    width, height = cfg.RESOLUTION
    with torch.no_grad():
        images = sampler(prompts, width=width, height=height, num_inference_steps=cfg.VALIDATION_STEPS,
                         guidance_scale=1.0, generator=torch.Generator("cpu").manual_seed(cfg.SEED)).images
    checkpoints.save_strip(images, path)


# ----------------------------------------------------------------------------------------------------------------------
# the run


def setup(cfg, accelerator, items, teacher_file):
    """Teacher, student LoRA, cached encodings, optimizer: everything the loop needs, prepared."""
    import torch
    from diffusers.optimization import get_scheduler

    pipe = load_teacher(cfg, teacher_file, checkpoints.weight_dtype(accelerator), accelerator.device)
    latents, text, uncond = encode_inputs(cfg, pipe, items, accelerator)
    torch.manual_seed(cfg.SEED)  # the LoRA's initial weights: the same in every process and every fresh run
    unet = pipe.unet
    params = list(lora.trainable(lora.add_lora(unet, None, cfg.LORA_RANK, LCM_TARGETS)).values())  # fp32
    if cfg.GRADIENT_CHECKPOINTING:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params, lr=cfg.LEARNING_RATE, weight_decay=cfg.ADAM_WEIGHT_DECAY)
    # prepared, the schedule is stepped once per process per step: its warm-up counts processes too
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer,
                                 num_warmup_steps=cfg.LR_WARMUP_STEPS * accelerator.num_processes)
    student, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    checkpoints.register_lora_hooks(accelerator, {"unet": unet}, f"delete {cfg.OUT_DIR}", attention_only=False)
    schedule = Schedule(pipe.scheduler.config, noise_schedule(cfg), cfg.NUM_DDIM_TIMESTEPS, accelerator.device)
    return dict(pipe=pipe, unet=unet, student=student, optimizer=optimizer, lr_scheduler=lr_scheduler, params=params,
                schedule=schedule, latents=latents, text=text, uncond=uncond,
                prompts=[caption for _, _, caption in items[:cfg.VALIDATION_N]], n_items=len(items))


def train_step(cfg, accelerator, run, step):
    """One optimizer step; this process takes every world-th sample of the step's batch. Returns the mean loss."""
    draws = step_draws(cfg, step, run["n_items"], tuple(run["latents"].shape[1:]), len(run["schedule"].timesteps),
                       accelerator.num_processes)
    mine = {k: v[accelerator.process_index::accelerator.num_processes] for k, v in draws.items()}
    index = mine["index"].to(run["latents"].device)
    with accelerator.accumulate(run["student"]), accelerator.autocast():
        loss = consistency_loss(run["unet"], run["student"], run["schedule"],
                                (run["latents"][index], run["text"][index], run["uncond"]), mine, cfg.HUBER_C)
        accelerator.backward(loss)
        if accelerator.sync_gradients and cfg.MAX_GRAD_NORM > 0:
            accelerator.clip_grad_norm_(run["params"], cfg.MAX_GRAD_NORM)
        run["optimizer"].step()
        run["lr_scheduler"].step()
        run["optimizer"].zero_grad(set_to_none=True)
    return accelerator.reduce(loss.detach(), reduction="mean").item()


def distill(cfg):
    check_settings(cfg)
    out_dir = files.check_writable(cfg.OUT_DIR)
    accelerator = checkpoints.make_accelerator(out_dir, cfg.MIXED_PRECISION)
    # the inputs, every banner decoded once, and the fingerprint: an up-to-date LoRA is said before any model loads
    items, _ = data.load_train_set(cfg.DATA_DIR, cfg.CAPTIONS, True)
    teacher_file, teacher = teacher_inputs(cfg)
    settings, digest = checkpoints.fingerprint(cfg, {**data.inputs_fingerprint(items), **teacher},
                                               accelerator.num_processes, checkpoints.precision_of(accelerator),
                                               _NOT_FINGERPRINTED)
    if checkpoints.is_up_to_date(out_dir, SETTINGS_FILE, digest):
        print(f"{out_dir / lora.LORA_FILE} is already distilled with these settings and inputs: nothing to do")
        return out_dir / lora.LORA_FILE
    # another run's checkpoints, a schedule the teacher cannot be distilled on: one line before any model loads
    resume_from, step = resume_point(out_dir, digest)
    check_prediction(cfg)
    run = dict(setup(cfg, accelerator, items, teacher_file), settings=settings, digest=digest)
    from training import loss_log  # here: importing accelerate's tracker base takes seconds (--help need not)

    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        print(f"resumed from {resume_from} (step {step})", flush=True)
    if accelerator.is_main_process:
        loss_log.restart(out_dir / checkpoints.LOSSES_FILE, step)
    accelerator.init_trackers("distill")
    stop_at = min(cfg.STOP_AT_STEP or cfg.MAX_STEPS, cfg.MAX_STEPS)
    bar = progress_bar(total=cfg.MAX_STEPS, initial=step, unit="step", desc="distill",
                       disable=not (cfg.PROGRESS and accelerator.is_main_process))
    started = time.perf_counter()
    run["student"].train()
    while step < stop_at:
        loss = train_step(cfg, accelerator, run, step)
        step += 1
        epoch = step * cfg.TRAIN_BATCH_SIZE * accelerator.num_processes // run["n_items"]
        accelerator.log({"epoch": epoch, "loss": loss, "lr": run["lr_scheduler"].get_last_lr()[0]}, step=step)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        if step % cfg.CHECKPOINT_EVERY == 0 or step == stop_at:
            checkpoints.save_checkpoint(accelerator, out_dir, step, {"fingerprint": run["digest"]},
                                        cfg.KEEP_CHECKPOINTS)
        if accelerator.is_main_process and ((cfg.VALIDATION_EVERY and step % cfg.VALIDATION_EVERY == 0)
                                            or step == cfg.MAX_STEPS):
            # under autocast: the prepared UNet hands back fp32 (accelerate's convert_to_fp32), the VAE is in fp16/bf16
            with accelerator.autocast():
                validation_strip(cfg, run["pipe"], run["prompts"], out_dir / "validation" / f"step_{step:06d}.png")
    bar.close()
    accelerator.wait_for_everyone()
    if step < cfg.MAX_STEPS:
        accelerator.end_training()
        print(f"stopped at step {step} of {cfg.MAX_STEPS} (STOP_AT_STEP): bash run/distill.sh continues", flush=True)
        return None
    try:
        return finish(cfg, accelerator, run, out_dir, time.perf_counter() - started)
    finally:
        accelerator.end_training()  # last: under several processes it ends the process group that barriers need


def finish(cfg, accelerator, run, out_dir, seconds):
    path = out_dir / lora.LORA_FILE
    if accelerator.is_main_process:
        lora.save_lora(out_dir, {"unet": run["unet"]}, attention_only=False)
        files.write_json(out_dir / SETTINGS_FILE, {"fingerprint": run["digest"], "settings": run["settings"],
                                                   "knobs": cfg.as_dict(), "lora_sha256": files.file_hash(path),
                                                   "noise_schedule": noise_schedule(cfg),
                                                   "seconds_this_run": round(seconds, 1)})
        print(f"consistency LoRA -> {path} ({cfg.MAX_STEPS} steps): bash run/inference_sd.sh config/method2_fast.py "
              f"--ADAPTER={out_dir}", flush=True)
    accelerator.wait_for_everyone()
    return path


def check_prediction(cfg):
    """Zero terminal SNR leaves no signal at the last timestep: only a v-prediction model can be distilled on it.
    Read from MODEL's scheduler config alone, before the teacher loads."""
    from diffusers import DDPMScheduler

    scheduler = models.load(DDPMScheduler.from_pretrained, cfg.MODEL, "sd21", smoke=cfg.SMOKE, subfolder="scheduler")
    config = {**scheduler.config, **noise_schedule(cfg)}
    if config.get("rescale_betas_zero_snr") and config.get("prediction_type") != "v_prediction":
        raise knobs.InputError(f"NOISE_SCHEDULE (zero terminal SNR) needs a v-prediction model; the teacher predicts "
                               f"{config.get('prediction_type')}: pass --NOISE_SCHEDULE=model")


def check_settings(cfg):
    """Bad knobs stop here in one line, before the data or any model loads."""
    width, height = cfg.RESOLUTION if len(cfg.RESOLUTION) == 2 else (0, 0)
    if width <= 0 or height <= 0 or width % 8 or height % 8:
        raise knobs.InputError(f"RESOLUTION must be (width, height), multiples of 8, got {cfg.RESOLUTION}")
    small = [n for n in ("MAX_STEPS", "TRAIN_BATCH_SIZE", "LORA_RANK", "CHECKPOINT_EVERY") if getattr(cfg, n) < 1]
    if small:
        raise knobs.InputError(f"{', '.join(small)} must be at least 1")
    if not 1 <= cfg.NUM_DDIM_TIMESTEPS <= 1000:
        raise knobs.InputError(f"NUM_DDIM_TIMESTEPS must be 1..1000 (the solver's timesteps), got "
                               f"{cfg.NUM_DDIM_TIMESTEPS}")
    if cfg.NOISE_SCHEDULE != "trained":
        lora.schedule_for(cfg.NOISE_SCHEDULE, "")  # its one refusal of an unknown name, before anything loads
    if not 0 <= cfg.W_MIN <= cfg.W_MAX:
        raise knobs.InputError(f"W_MIN, W_MAX must satisfy 0 <= W_MIN <= W_MAX, got {cfg.W_MIN}, {cfg.W_MAX}")


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    rank, _, _ = devices.process_info()
    if rank == 0:
        knobs.announce_smoke("consistency distillation", cfg.SMOKE)
    # one lock per output folder, taken by the launcher's first process (the others share its run)
    lock = files.FolderLock(cfg.OUT_DIR) if rank == 0 else contextlib.nullcontext()
    with lock, quiet_libraries():
        return distill(cfg)


if __name__ == "__main__":
    knobs.run_main(main)
