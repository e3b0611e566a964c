"""
Method 1 speed and memory with the REAL Stable Diffusion 1.5 architecture and RANDOM weights (no download: speed does
not depend on weight values). The UNet (860 M parameters), VAE (84 M) and CLIP ViT-L/14 text encoder (123 M) are built
from SD 1.5's published configs written below; the tokenizer is the real CLIP vocab (the smoke sd15 tokenizer). The
generation path is Method 1's own (`method1.generate`: per-row generators, batches, DPM-Solver++, guidance).

Prints banners/s, UNet evaluations per banner (counted at the UNet) and peak memory (CUDA allocator on a GPU, process
peak RSS on the CPU). Optionally also times the duplication guard's Inception features per banner.

GPU (defaults):  python -m inference.benchmark
CPU (reduced):   python -m inference.benchmark --N_BANNERS=1 --BATCH_SIZE=1 --STEPS=4 --WARMUP=0
"""
import resource
import time

from core import devices, images, knobs
from inference import method1

N_BANNERS = 8  # banners timed (after the warm-up)
BATCH_SIZE = 4  # images per pipeline call (Method 1's default)
STEPS = 30  # scheduler steps; img2img runs int(STEPS * STRENGTH) of them
STRENGTH = 0.6  # Method 1's default
GUIDANCE = 7.5  # > 1 doubles the UNet batch
GEN_SIZE = (1024, 536)  # WxH
SCHEDULER = "dpmpp"  # as Method 1
DTYPE = "fp16"  # on CUDA; the CPU always runs fp32
DEVICE = "auto"  # auto | cuda | cpu
WARMUP = 1  # untimed batches first (CUDA kernels, allocator)
GUARD = True  # also time the duplication guard's Inception features of the outputs
knobs.configure(globals())

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, cross_attention_dim=768,
                 block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8, norm_num_groups=32,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
SD15_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
                block_out_channels=(128, 256, 512, 512), norm_num_groups=32,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
SD15_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
                 bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
SD15_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      set_alpha_to_one=False, steps_offset=1, skip_prk_steps=True)


def build_sd15(device, dtype):
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    import smoke

    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(smoke.smoke_model("sd15"), subfolder="tokenizer")
    pipe = StableDiffusionImg2ImgPipeline(
        vae=AutoencoderKL(**SD15_VAE), text_encoder=CLIPTextModel(CLIPTextConfig(**SD15_TEXT)), tokenizer=tokenizer,
        unet=UNet2DConditionModel(**SD15_UNET), scheduler=PNDMScheduler(**SD15_SCHEDULER),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if dtype != torch.float32:
        pipe = pipe.to(dtype=dtype)
    return method1.prepare_pipeline(pipe, device)


def peak_memory(device):
    import torch

    if str(device).startswith("cuda"):
        return f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (allocated)"
    return f"peak process RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (CPU run)"


def main():
    import torch
    from PIL import Image

    device = devices.pick_device(DEVICE)
    dtype = devices.pick_dtype(device, DTYPE)
    for name in ("BATCH_SIZE", "STEPS", "GUIDANCE", "SCHEDULER", "GEN_SIZE"):
        setattr(method1, name, globals()[name])
    t0 = time.perf_counter()
    pipe = build_sd15(device, dtype)
    params = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) / 1e6
              for name in ("unet", "vae", "text_encoder")}
    print(f"SD 1.5 architecture, random weights, on {device} {dtype}: "
          + ", ".join(f"{k} {v:.0f} M" for k, v in params.items()) + f" (built in {time.perf_counter() - t0:.1f} s)")
    init = Image.new("RGB", tuple(GEN_SIZE), (180, 150, 120))
    prompt = "Premium leather car seat covers, tailored to each model, heat resistant, easy to clean"
    jobs = [(prompt, init, i) for i in range(N_BANNERS)]
    if WARMUP:
        method1.generate(pipe, jobs[:BATCH_SIZE] * WARMUP, STRENGTH)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    calls = pipe.unet_calls[0]
    images, seconds = method1.generate(pipe, jobs, STRENGTH)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    unet_per_banner = (pipe.unet_calls[0] - calls) / N_BANNERS
    print(f"{N_BANNERS} banners at {GEN_SIZE[0]}x{GEN_SIZE[1]}, batch {BATCH_SIZE}, {STEPS} steps x strength "
          f"{STRENGTH}, guidance {GUIDANCE}, {SCHEDULER}: {seconds:.2f} s -> {N_BANNERS / seconds:.4f} banners/s "
          f"({seconds / N_BANNERS:.2f} s per banner)")
    print(f"UNet evaluations per banner: {unet_per_banner:.1f} (int({STEPS} x {STRENGTH}) = {int(STEPS * STRENGTH)} "
          f"steps x {2 if GUIDANCE > 1 else 1}); {peak_memory(device)}")
    if GUARD:
        from evaluation.inception import InceptionFeatures

        extractor = InceptionFeatures(device=device)
        extractor(images[:1])
        t0 = time.perf_counter()
        extractor([images.to_banner(im) for im in images])
        guard = (time.perf_counter() - t0) / len(images)
        print(f"duplication guard (Inception features of an output): {guard:.3f} s per banner")
    print(f"738 test rows at THIS configuration, no retries: {738 * seconds / N_BANNERS / 60:.1f} min per run")


if __name__ == "__main__":
    knobs.run_main(main)
