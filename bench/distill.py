"""
Speed and memory of the consistency distillation (training/distill.py) at the real SD 2.1 size, with random weights
(speed does not depend on their values; nothing is downloaded): the SD 2.1 UNet built from its config with the
distillation's own LoRA (rank 64 on attention, feed-forward and ResNet layers) and its own loss (`consistency_loss`:
student, teacher conditional and unconditional, target: 4 UNet passes and one backward a step), AdamW, fp16 autocast
with a grad scaler on a GPU. The latents and caption embeddings are random tensors of the cached ones' shapes (the
distillation encodes them once, before the first step).

Prints optimizer steps/s, peak memory and the projected time of MAX_STEPS (distill.py's default) per layout. On the CPU
it runs the CPU_* settings (a check that it works).

    python -m bench.distill [--CONFIGS=8,4:gc] [--STEPS=10]
"""
import time

from core import knobs
from core.sd_configs import SD21_UNET
from training import distill

CONFIGS = ("8", "4:gc")  # batch per step [:gc = gradient checkpointing]
RESOLUTION = (512, 512)  # (width, height): the banner LoRA's training size
STEPS = 10  # timed optimizer steps per layout
WARMUP = 2  # untimed steps first
LORA_RANK = distill.LORA_RANK  # the distillation's default
MAX_STEPS = distill.MAX_STEPS  # the distillation's default: the projection
CPU_CONFIGS = ("1",)
CPU_RESOLUTION = (64, 64)
CPU_STEPS = 1
CPU_WARMUP = 0


def measure(cfg, layout, resolution, device):
    """(steps/s, peak GiB) of one layout."""
    import torch
    from diffusers import UNet2DConditionModel

    import model_facts

    from training import lora

    batch, checkpointing = int(layout.split(":")[0]), layout.endswith(":gc")
    cuda = device == "cuda"
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD21_UNET).to(device, torch.float16 if cuda else torch.float32)
    unet.requires_grad_(False)
    params = list(lora.trainable(lora.add_lora(unet, None, cfg.LORA_RANK, distill.LCM_TARGETS)).values())
    if checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    scaler = torch.amp.GradScaler(enabled=cuda)
    # SD 2.1's own scheduler config, on the zero-terminal-SNR schedule the banner LoRA trains with by default
    schedule = distill.Schedule(model_facts.SD21_SCHEDULER, lora.NOISE_SCHEDULES["zero_snr_trailing"], 50, device)
    width, height = resolution
    latents = torch.randn(batch, 4, height // 8, width // 8, device=device)
    text = torch.randn(batch, 77, unet.config.cross_attention_dim, device=device)
    uncond = torch.randn(1, 77, unet.config.cross_attention_dim, device=device)
    draws = {"ddim_index": torch.randint(0, 50, (batch,)), "noise": torch.randn_like(latents).cpu(),
             "w": torch.full((batch,), 8.0)}

    def step():
        with torch.autocast(device, dtype=torch.float16, enabled=cuda):
            loss = distill.consistency_loss(unet, unet, schedule, (latents, text, uncond), draws, 0.001)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(cfg.WARMUP):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(cfg.STEPS):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else 0.0
    return cfg.STEPS / seconds, peak


def main(argv=None):
    import torch

    cfg = knobs.configure(globals(), argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        cfg = cfg.replace(CONFIGS=cfg.CPU_CONFIGS, RESOLUTION=cfg.CPU_RESOLUTION, STEPS=cfg.CPU_STEPS,
                          WARMUP=cfg.CPU_WARMUP)
    print(f"consistency distillation, SD 2.1 UNet (random weights) + LoRA rank {cfg.LORA_RANK}, on {device}, "
          f"{cfg.RESOLUTION[0]}x{cfg.RESOLUTION[1]}")
    for layout in cfg.CONFIGS:
        steps_per_s, peak = measure(cfg, layout, cfg.RESOLUTION, device)
        print(f"batch {layout}: {steps_per_s:.3g} steps/s ({steps_per_s * int(layout.split(':')[0]):.3g} samples/s), "
              f"peak {peak:.1f} GiB allocated; {cfg.MAX_STEPS} steps in {cfg.MAX_STEPS / steps_per_s / 60:.1f} min",
              flush=True)


if __name__ == "__main__":
    knobs.run_main(main)
