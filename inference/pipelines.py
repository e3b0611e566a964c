"""
What both generation methods do to a loaded diffusers pipeline: a scheduler by name, a tokenizer check, quiet progress,
VAE slicing, the speed knobs (torch.compile of the UNet; channels_last), and a UNet call counter (the compute
accounting's ground truth: images the UNet processed, a guidance pair counting 2).
"""
from core.knobs import InputError
from core import prompt_fit

SCHEDULERS = {"dpmpp": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
              "ddim": ("DDIMScheduler", {}), "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
              "euler_a": ("EulerAncestralDiscreteScheduler", {}),
              # few-step, with the acceleration LoRA they were distilled for (inference/accel.py)
              "lcm": ("LCMScheduler", {}), "tcd": ("TCDScheduler", {})}


def set_scheduler(pipe, name, schedule=None):
    """The pipeline's sampler replaced by the one of SCHEDULERS called `name` ("default": the checkpoint's own), on the
    checkpoint's noise schedule or, given `schedule` (scheduler config values: zero-terminal-SNR rescale, timestep
    spacing), on that one: Method 2 samples on the schedule its LoRA was trained with."""
    import diffusers

    if name != "default" and name not in SCHEDULERS:
        raise InputError(f"SCHEDULER={name!r}: choose from {', '.join(SCHEDULERS)} or default")
    if name == "default" and not schedule:
        return pipe
    cls, kwargs = SCHEDULERS[name] if name != "default" else (type(pipe.scheduler).__name__, {})
    config = pipe.scheduler.config
    pipe.scheduler = getattr(diffusers, cls).from_config(config, **{**kwargs, **(schedule or {})})
    lost = _lost(pipe.scheduler, schedule)
    if lost:
        able = [n for n, (c, kw) in SCHEDULERS.items()
                if not _lost(getattr(diffusers, c).from_config(config, **{**kw, **schedule}), schedule)]
        raise InputError(f"SCHEDULER={name} cannot sample on this noise schedule ({', '.join(lost)}): choose one of "
                         f"{', '.join(able)}, or NOISE_SCHEDULE=model")
    return pipe


def _lost(scheduler, schedule):
    """The settings of `schedule` that `scheduler` does not have: from_config drops what a sampler has no setting for
    (PNDM has no zero-terminal-SNR rescale), and that is never silent."""
    return [k for k, v in (schedule or {}).items() if scheduler.config.get(k) != v]


def img2img_steps(scheduler, steps, strength):
    """The img2img call's step arguments: int(steps x strength) steps from the noise level `strength` sets. A sampler
    that cuts its own schedule at a strength (LCM, TCD) is asked for those steps directly, as diffusers' LCM img2img
    pipeline does: cutting its `steps`-step schedule instead would start on its coarse grid, below that level (8 LCM
    steps x 0.6 start at t=499; the seed's 30 DPM++ steps x 0.6 at 599). The pipeline then takes those timesteps
    whole (strength 1 over them: the init banner is noised to the first)."""
    import inspect

    if "strength" not in inspect.signature(scheduler.set_timesteps).parameters:
        return {"num_inference_steps": steps, "strength": strength}
    scheduler.set_timesteps(max(1, int(steps * strength)), strength=strength)
    return {"timesteps": scheduler.timesteps.tolist(), "strength": 1.0}


def prepare(pipe, device, cfg):
    """The pipeline on `device`, ready for the methods' generate functions: its tokenizer checked, progress bars off,
    the speed knobs applied (VAE_SLICING, CHANNELS_LAST, COMPILE) and its UNet's calls counted (the compute accounting's
    ground truth: images the UNet processed, a guidance pair counting 2; `unet_images_since_last`)."""
    import torch

    prompt_fit.check_tokenizer(pipe.tokenizer, f"{cfg.MODEL} tokenizer")
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if cfg.VAE_SLICING:
        pipe.vae.enable_slicing()
    if cfg.CHANNELS_LAST:
        pipe.unet.to(memory_format=torch.channels_last)
    pipe.unet_calls = [0]
    pipe.unet.register_forward_pre_hook(
        lambda _m, args: pipe.unet_calls.__setitem__(0, pipe.unet_calls[0] + len(args[0])))
    if cfg.COMPILE:
        # the hook above stays on the module; compile wraps its forward (first batches are slow while it compiles)
        pipe.unet.compile(fullgraph=False, mode="max-autotune-no-cudagraphs")
    return pipe


def unet_images_since_last(pipe):
    """Images the UNet processed since the last call (or since `prepare`): one run's compute figure."""
    count, pipe.unet_calls[0] = pipe.unet_calls[0], 0
    return count


def generators(seeds):
    """One CPU generator per image: the noise depends on the seed alone, on any device or batch."""
    import torch

    return [torch.Generator("cpu").manual_seed(s) for s in seeds]


def compute_line(figures, per_banner, formula, peak_gib=None):
    """The compute accounting a method prints: banners/s, UNet evaluations per banner measured and expected."""
    n = max(1, figures["rows"])
    seconds = figures["seconds"]
    return (f"[rank {figures.get('rank', 0)}] compute: {figures['rows']} banners in {seconds:.1f} s "
            f"({figures['rows'] / seconds if seconds else 0:.3f} banners/s); UNet evaluations per banner "
            f"{figures['unet_images'] / n:.1f} measured (first try alone: {formula} = {per_banner}; retries add more); "
            f"{figures['generations']} generations" + (f"; peak GPU memory {peak_gib:.2f} GiB" if peak_gib else ""))
