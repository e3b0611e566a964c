"""
Speed and memory of LoRA training at the real SD 2.1 size, with random weights (speed does not depend on their values,
and nothing is downloaded): the SD 2.1 UNet, VAE encoder and OpenCLIP-H text encoder built from their configs, the
trainer's own LoRA and loss (training/lora.py), AdamW, fp16 autocast with a grad scaler on a GPU.

For each batch layout in CONFIGS ("BxA": micro-batch B, accumulation A; "@WxH" another resolution; ":gc" gradient
checkpointing) it prints optimizer steps/s, images/s, peak memory and the projected time of the seed's recipe
(50 epochs x 1362 banners = 68,100 images). On the CPU it runs the CPU_* settings instead (a check that it works, and a
figure for the CPU).

    python -m bench.training [--CONFIGS=8x1,2x4,2x4:gc,2x1@768x400] [--TEXT_ENCODER=0 --VAE=0 for the UNet alone]
    python -m bench.training --CONFIGS=8x1 --COMPILE=1     (the trainer's COMPILE=1; prints the compile time too)
"""
import re
import time

from core import knobs
from core.sd_configs import SD21_TEXT, SD21_UNET, SD21_VAE

CONFIGS = ("8x1", "2x4", "2x4:gc", "2x1@768x400")  # layouts to time: BxA[@WxH][:gc]
RESOLUTION = (512, 512)  # (width, height) when a layout names none
STEPS = 20  # timed optimizer steps per layout
WARMUP = 3  # untimed steps first (cuDNN autotuning, allocator)
TEXT_ENCODER = True  # text-encoder LoRA trained too (the default recipe); False: UNet only
VAE = True  # encode the images every step (augmentation on: the default); False: cached latents
LORA_RANK = 4  # as the trainer
COMPILE = False  # torch.compile as the trainer's COMPILE=1 (UNet, and the VAE encoder when VAE=1); compiled in warm-up
IMAGES = 68_100  # the seed's recipe: 50 epochs of 1362 banners
CPU_CONFIGS = ("2x1",)  # on the CPU
CPU_RESOLUTION = (64, 64)  # on the CPU: the real architecture at a small size
CPU_STEPS = 2  # on the CPU
CPU_WARMUP = 1  # on the CPU


def parse_layout(text, resolution):
    m = re.fullmatch(r"(\d+)x(\d+)(?:@(\d+)x(\d+))?(:gc)?", text.strip())
    if not m:
        raise knobs.InputError(f"CONFIGS: {text!r} is not BxA[@WxH][:gc], e.g. 8x1 or 2x4:gc or 2x1@768x400")
    width, height = (int(m.group(3)), int(m.group(4))) if m.group(3) else resolution
    if width % 8 or height % 8:
        raise knobs.InputError(f"CONFIGS: {text!r}: width and height must be multiples of 8")
    return int(m.group(1)), int(m.group(2)), (width, height), bool(m.group(5))


def build(cfg, device, dtype, gradient_checkpointing):
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from training import lora

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD21_UNET).to(device, dtype).requires_grad_(False)
    text = CLIPTextModel(CLIPTextConfig(**SD21_TEXT)).to(device, dtype).requires_grad_(False)
    vae = AutoencoderKL(**SD21_VAE).to(device, dtype).requires_grad_(False) if cfg.VAE else None
    models = lora.add_lora(unet, text if cfg.TEXT_ENCODER else None, cfg.LORA_RANK)
    if gradient_checkpointing:
        lora.checkpoint_activations(models)
    if cfg.COMPILE:
        lora.compile_models(unet, vae)
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              prediction_type="v_prediction")
    return models, text, vae, scheduler


def measure(cfg, layout, device):
    """(steps/s, images/s, peak GiB, seconds of the warm-up: the compiling when COMPILE=1) of one layout."""
    import torch

    from training import lora

    batch, accum, (width, height), gc = layout
    cuda = device == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    models, text, vae, scheduler = build(cfg, device, dtype, gc)
    params = list(lora.trainable(models).values())
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    scaler = torch.amp.GradScaler(enabled=cuda)
    latent = (4, height // 8, width // 8)
    ids = torch.randint(0, 49407, (batch, 77), device=device)

    def step():
        for _ in range(accum):
            with torch.autocast(device, dtype=torch.float16, enabled=cuda):
                if vae is not None:
                    with torch.no_grad():
                        pixels = torch.rand(batch, 3, height, width, device=device, dtype=dtype) * 2 - 1
                        latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
                else:
                    latents = torch.randn(batch, *latent, device=device)
                with torch.set_grad_enabled(cfg.TEXT_ENCODER):
                    embeddings = text(ids, return_dict=False)[0]
                noise = torch.randn(batch, *latent, device=device)
                timesteps = torch.randint(0, 1000, (batch,), device=device)
                loss = lora.diffusion_loss(models["unet"], scheduler, latents.float(), noise, timesteps, embeddings)
            scaler.scale(loss.mean() / accum).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    steps, warmup = (cfg.STEPS, cfg.WARMUP) if cuda else (cfg.CPU_STEPS, cfg.CPU_WARMUP)
    started = time.perf_counter()
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    warmup_s = time.perf_counter() - started
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else rss_gib()
    del models, text, vae, optimizer
    if cuda:
        torch.cuda.empty_cache()
    return steps / seconds, steps * batch * accum / seconds, peak, warmup_s


def rss_gib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux; the process's high-water mark


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    import torch

    from core.progress import quiet_libraries

    with quiet_libraries():  # the library's per-call logs would bury the table
        run(cfg, torch)


def run(cfg, torch):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    configs, resolution = (cfg.CONFIGS, cfg.RESOLUTION) if device == "cuda" else (cfg.CPU_CONFIGS, cfg.CPU_RESOLUTION)
    layouts = [parse_layout(c, resolution) for c in configs]
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    parts = ["UNet"] + ["text encoder"] * cfg.TEXT_ENCODER
    print(f"SD 2.1 LoRA rank {cfg.LORA_RANK} on {' + '.join(parts)}{', VAE encode every step' if cfg.VAE else ''}; "
          f"{name}; {'fp16 autocast' if device == 'cuda' else 'fp32'}; {'torch.compile; ' if cfg.COMPILE else ''}"
          f"random weights", flush=True)
    print(f"{'layout':>16} {'steps/s':>8} {'images/s':>9} {'peak GiB':>9} {f'{cfg.IMAGES:,} images':>16} "
          f"{'warm-up':>9}")
    for text, layout in zip(configs, layouts):
        batch, accum, (width, height), gc = layout
        steps_s, images_s, peak, warmup_s = measure(cfg, layout, device)
        label = f"{batch}x{accum} {width}x{height}{' gc' if gc else ''}"
        projected = cfg.IMAGES / images_s / 60
        print(f"{label:>16} {steps_s:8.2f} {images_s:9.2f} {peak:9.1f} {projected:13.1f} min {warmup_s:7.0f} s",
              flush=True)
    if device == "cpu":
        print("(CPU: peak is the process's resident high-water mark; the projection is for this small size)")


if __name__ == "__main__":
    knobs.run_main(main)
