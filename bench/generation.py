"""
Generation speed and memory with the REAL architectures and RANDOM weights (no download: speed does not depend on
weight values), on the methods' own generate functions (per-row generators, batches, schedulers, guidance).

MODE=method1: SD 1.5 img2img (UNet 860 M, VAE 84 M, CLIP ViT-L/14 text 123 M) as Method 1 runs it.
MODE=method2: SD 2.1 text-to-image (UNet 866 M with linear projections and per-block heads, OpenCLIP ViT-H/14 text
encoder 340 M), DDIM zero-SNR trailing, as Method 2 runs it (a LoRA fused into the weights costs nothing per step).
The tokenizer is the real CLIP vocab (the smoke tokenizer, rebuilt from the BPE file open_clip ships; TOKENIZER names
another folder on a machine without open_clip).

Each preset of PRESETS is built and timed in turn (seed: the seed's settings; fast: the few-step config file, an
acceleration LoRA of random weights fused into the UNet as the method fuses it, TAESD of random weights), then the
ratios fast/seed are printed.

Prints banners/s, UNet evaluations per banner (counted at the UNet), the time per UNet call eager and, with
COMPILE_CHECK, compiled (torch.compile, channels_last both ways), peak memory (CUDA allocator on a GPU, process RSS on
the CPU), and the projected time for the 738 test rows. Optionally the duplication guard's Inception features.

GPU (defaults):  python -m bench.generation [--MODE=method2] [--COMPILE_CHECK]
CPU (reduced):   python -m bench.generation --N_BANNERS=1 --BATCH_SIZE=1 --STEPS=4 --WARMUP=0 --GUARD=0
"""
import resource
import time
from pathlib import Path

from core import devices, knobs
from core.sd_configs import SD15_SCHEDULER, SD15_TEXT, SD15_UNET, SD15_VAE, SD21_TEXT, SD21_UNET

REPO = Path(__file__).resolve().parents[1]

MODE = "method1"  # method1 (SD 1.5 img2img) | method2 (SD 2.1 text-to-image)
N_BANNERS = 8  # banners timed (after the warm-up)
BATCH_SIZE = 4  # images per pipeline call (the methods' default)
STEPS = 30  # scheduler steps; img2img runs int(STEPS * STRENGTH) of them
STRENGTH = 0.6  # method1: img2img strength (Method 1's default)
GUIDANCE = 7.5  # > 1 doubles the UNet batch
GEN_SIZE = (1024, 536)  # WxH
DTYPE = "fp16"  # on CUDA; the CPU always runs fp32
DEVICE = "auto"  # auto | cuda | cpu
WARMUP = 1  # untimed batches first (CUDA kernels, allocator)
CHANNELS_LAST = False  # the UNet in channels_last for the banner timing
COMPILE = False  # torch.compile the UNet for the banner timing
COMPILE_CHECK = False  # also time one UNet call eager / channels_last / compiled, and check compiled images match
GUARD = True  # also time the duplication guard's Inception features of the outputs
TOKENIZER = ""  # a CLIP tokenizer folder ("" = the smoke tokenizer: the real CLIP vocab)
TEST_ROWS = 738  # rows of the public test set, for the projection
PRESETS = "seed,fast"  # timed one after the other in this run and compared: seed (the method's defaults with STEPS,
# STRENGTH, GUIDANCE above) | fast (config/<MODE>_fast.py: acceleration LoRA of random weights, fused, its scheduler,
# TAESD of random weights)



def tokenizer(cfg):
    from transformers import CLIPTokenizer

    if cfg.TOKENIZER:
        return CLIPTokenizer.from_pretrained(cfg.TOKENIZER)
    import smoke

    return CLIPTokenizer.from_pretrained(smoke.smoke_model("sd15"), subfolder="tokenizer")


def build(cfg, method_cfg, device, dtype):
    """The MODE's pipeline with random weights, prepared as the method prepares it."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionImg2ImgPipeline,
                           StableDiffusionPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    from inference import method1, method2, pipelines

    torch.manual_seed(0)
    v2 = cfg.MODE == "method2"
    parts = dict(vae=AutoencoderKL(**SD15_VAE), tokenizer=tokenizer(cfg), safety_checker=None, feature_extractor=None,
                 requires_safety_checker=False,
                 text_encoder=CLIPTextModel(CLIPTextConfig(**(SD21_TEXT if v2 else SD15_TEXT))),
                 unet=UNet2DConditionModel(**(SD21_UNET if v2 else SD15_UNET)))
    if v2:
        pipe = StableDiffusionPipeline(**parts, scheduler=DDIMScheduler(
            num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction"))
    else:
        pipe = StableDiffusionImg2ImgPipeline(**parts, scheduler=PNDMScheduler(**SD15_SCHEDULER))
    if dtype != torch.float32:
        pipe = pipe.to(dtype=dtype)
    if method_cfg.ADAPTER or method_cfg.DECODER not in ("", "full"):
        add_fast_parts(pipe, method2 if v2 else method1, method_cfg, dtype)
    # the method's own scheduler and VAE slicing: the benchmark measures what the method runs
    pipe = method2.set_scheduler(pipe, method_cfg) if v2 else pipelines.set_scheduler(pipe, method_cfg.SCHEDULER)
    return pipelines.prepare(pipe, device, method_cfg.replace(MODEL=cfg.MODE, COMPILE=cfg.COMPILE,
                                                              CHANNELS_LAST=cfg.CHANNELS_LAST))


def add_fast_parts(pipe, method, method_cfg, dtype):
    """The fast preset's adapter and decoder as `method` (inference.method1 or .method2) adds them, with random weights
    of the real shapes."""
    import tempfile

    from diffusers import AutoencoderTiny

    import model_facts
    import smoke

    work = Path(tempfile.mkdtemp(prefix="bench_fast_"))
    if method_cfg.ADAPTER:
        smoke.random_lora(pipe.unet, work / "adapter", rank=64, targets=model_facts.LCM_LORA_TARGETS)  # LCM-LoRA's
    if method_cfg.DECODER not in ("", "full"):
        AutoencoderTiny().save_pretrained(work / "taesd")  # TAESD's own layout (diffusers' defaults)
    fast_cfg = method_cfg.replace(ADAPTER=str(work / "adapter") if method_cfg.ADAPTER else "",
                                  DECODER=str(work / "taesd") if method_cfg.DECODER not in ("", "full") else "full")
    method.add_fast_parts(pipe, fast_cfg, dtype)


def generate(cfg, pipe, method_cfg, calls):
    """The method's own generate function on `calls` [(prompt, init path or None, seed)], BATCH_SIZE a pipeline call
    (as the runner's batches hand them to it)."""
    from inference import method1, method2

    out = []
    for batch in (calls[i:i + cfg.BATCH_SIZE] for i in range(0, len(calls), cfg.BATCH_SIZE)):
        out += method2.generate(pipe, method_cfg, batch) if cfg.MODE == "method2" else \
            method1.generate(pipe, method_cfg, batch, method_cfg.STRENGTH)
    return out


def method_config(cfg, preset):
    """The method's Config for `preset`: seed = its defaults with the benchmark's STEPS/STRENGTH/GUIDANCE; fast = its
    few-step config file as a user runs it."""
    from inference import method1, method2

    module = method2 if cfg.MODE == "method2" else method1
    if preset not in ("seed", "fast"):
        raise knobs.InputError(f"PRESETS: {preset!r} is not seed or fast")
    if preset == "fast":
        method_cfg = knobs.configure(module, [str(REPO / "config" / f"{cfg.MODE}_fast.py")], env={})
    else:
        method_cfg = knobs.configure(module, [], env={}).replace(STEPS=cfg.STEPS, GUIDANCE=cfg.GUIDANCE)
        if cfg.MODE == "method1":
            method_cfg = method_cfg.replace(STRENGTH=cfg.STRENGTH)
    return method_cfg.replace(BATCH_SIZE=cfg.BATCH_SIZE, GEN_SIZE=tuple(cfg.GEN_SIZE))


def peak_memory(device):
    import torch

    if str(device).startswith("cuda"):
        return f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (allocated)"
    return f"peak process RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (CPU run)"


def sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def unet_call_times(cfg, pipe, device, dtype, repeats=5):
    """ms per UNet call at the method's shape (batch x guidance, latent of GEN_SIZE, 77 tokens): eager,
    channels_last, and torch.compile + channels_last; and the largest pixel difference compiled vs eager."""
    import torch

    unet = pipe.unet
    batch = cfg.BATCH_SIZE * (2 if cfg.GUIDANCE > 1 else 1)
    w, h = cfg.GEN_SIZE
    sample = torch.randn(batch, 4, h // 8, w // 8, device=device, dtype=dtype)
    hidden = torch.randn(batch, 77, unet.config.cross_attention_dim, device=device, dtype=dtype)
    t = torch.tensor([500] * batch, device=device)

    def timed(fn):
        with torch.no_grad():
            fn()
            sync(device)
            start = time.perf_counter()
            for _ in range(repeats):
                out = fn()
            sync(device)
        return (time.perf_counter() - start) / repeats * 1000, out

    eager_ms, eager = timed(lambda: unet(sample, t, hidden).sample)
    unet.to(memory_format=torch.channels_last)
    cl_ms, _ = timed(lambda: unet(sample, t, hidden).sample)
    t0 = time.perf_counter()
    compiled = torch.compile(unet, mode="max-autotune-no-cudagraphs")
    with torch.no_grad():
        compiled(sample, t, hidden)
    compile_s = time.perf_counter() - t0
    comp_ms, comp = timed(lambda: compiled(sample, t, hidden).sample)
    unet.to(memory_format=torch.contiguous_format)
    diff = (comp.float() - eager.float()).abs().max().item()
    print(f"UNet call (batch {batch}, latent {h // 8}x{w // 8}): eager {eager_ms:.1f} ms, channels_last {cl_ms:.1f} ms, "
          f"compiled + channels_last {comp_ms:.1f} ms (compiling took {compile_s:.0f} s); compiled vs eager max "
          f"|diff| {diff:.2e} on the UNet output")


def time_preset(cfg, preset, device, dtype, init):
    """Build the MODE's pipeline for `preset`, time N_BANNERS banners; print and return its figures."""
    import torch

    from core import images

    t0 = time.perf_counter()
    method_cfg = method_config(cfg, preset)
    pipe = build(cfg, method_cfg, device, dtype)
    params = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) / 1e6
              for name in ("unet", "vae", "text_encoder")}
    arch = "SD 2.1 text-to-image" if cfg.MODE == "method2" else "SD 1.5 img2img"
    print(f"\n[{preset}] {arch} architecture, random weights, on {device} {dtype}: "
          + ", ".join(f"{k} {v:.0f} M" for k, v in params.items()) + f" (built in {time.perf_counter() - t0:.1f} s)"
          + f"; scheduler {type(pipe.scheduler).__name__}, decoder {type(pipe.vae).__name__}"
          + (f", adapter fused" if method_cfg.ADAPTER else ""))
    prompt = "Premium leather car seat covers, tailored to each model, heat resistant, easy to clean"
    calls = [(prompt, init, i) for i in range(cfg.N_BANNERS)]
    if cfg.WARMUP:
        generate(cfg, pipe, method_cfg, calls[:cfg.BATCH_SIZE] * cfg.WARMUP)
    sync(device)
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    before = pipe.unet_calls[0]
    start = time.perf_counter()
    outs = generate(cfg, pipe, method_cfg, calls)
    sync(device)
    seconds = time.perf_counter() - start
    figures = dict(unet=(pipe.unet_calls[0] - before) / cfg.N_BANNERS, per_banner=seconds / cfg.N_BANNERS,
                   memory=peak_memory(device))
    steps = int(method_cfg.STEPS * method_cfg.STRENGTH) if cfg.MODE == "method1" else method_cfg.STEPS
    print(f"[{preset}] {cfg.N_BANNERS} banners at {cfg.GEN_SIZE[0]}x{cfg.GEN_SIZE[1]}, batch {cfg.BATCH_SIZE}, "
          f"{steps} UNet steps, guidance {method_cfg.GUIDANCE}{', compiled' if cfg.COMPILE else ''}"
          f"{', channels_last' if cfg.CHANNELS_LAST else ''}: {seconds:.2f} s -> {1 / figures['per_banner']:.4f} "
          f"banners/s ({figures['per_banner']:.3f} s per banner)")
    print(f"[{preset}] UNet evaluations per banner: {figures['unet']:.1f} counted at the UNet "
          f"({steps} steps x {2 if method_cfg.GUIDANCE > 1 else 1}); {figures['memory']}")
    print(f"[{preset}] {cfg.TEST_ROWS} test rows at this preset, no retries: "
          f"{cfg.TEST_ROWS * figures['per_banner'] / 60:.1f} min per run")
    if cfg.GUARD:
        from evaluation.inception import InceptionFeatures

        extractor = InceptionFeatures(device=device)
        extractor(outs[:1])
        t0 = time.perf_counter()
        extractor([images.to_banner(im) for im in outs])
        print(f"[{preset}] duplication guard (Inception features of an output): "
              f"{(time.perf_counter() - t0) / len(outs):.3f} s per banner")
    if cfg.COMPILE_CHECK:
        unet_call_times(cfg.replace(GUIDANCE=method_cfg.GUIDANCE), pipe, device, dtype)
    return figures


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    device = devices.pick_device(cfg.DEVICE)
    dtype = devices.pick_dtype(device, cfg.DTYPE)
    init = None
    if cfg.MODE == "method1":
        import tempfile

        from PIL import Image

        init = tempfile.NamedTemporaryFile(suffix=".jpg", delete=False).name
        Image.new("RGB", tuple(cfg.GEN_SIZE), (180, 150, 120)).save(init)
    presets = [p.strip() for p in cfg.PRESETS.split(",") if p.strip()]
    figures = {preset: time_preset(cfg, preset, device, dtype, init) for preset in presets}
    if cfg.MODE == "method2":
        print("(the banner LoRA is not loaded: with FUSE_LORA=1 it costs nothing per step)")
    if {"seed", "fast"} <= set(figures):
        seed, fast = figures["seed"], figures["fast"]
        print(f"\nfast vs seed: UNet evaluations per banner {fast['unet']:.1f} vs {seed['unet']:.1f} "
              f"({seed['unet'] / max(fast['unet'], 1e-9):.1f}x fewer); {fast['per_banner']:.3f} vs "
              f"{seed['per_banner']:.3f} s per banner ({seed['per_banner'] / fast['per_banner']:.1f}x faster); "
              f"{cfg.TEST_ROWS} rows {cfg.TEST_ROWS * fast['per_banner'] / 60:.1f} vs "
              f"{cfg.TEST_ROWS * seed['per_banner'] / 60:.1f} min; memory: {fast['memory']} vs {seed['memory']}")


if __name__ == "__main__":
    knobs.run_main(main)
