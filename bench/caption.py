"""
Benchmark of the caption stage's model step: the real LLaVA-1.5-7B architecture (CLIP ViT-L/14-336 + projector +
Llama-2-7B, the shapes of llava-hf/llava-1.5-7b-hf's config) built from a config in code with random weights (no
download; speed does not depend on the values), generating MAX_NEW_TOKENS tokens for a prompt of 576 image tokens +
PROMPT_TOKENS text tokens per row, with the stage's per-row sampler. Prints images/s at each batch size, peak memory,
and the projected time for the 1362 training banners.

On a CPU it runs reduced (SIZE=auto): the same sequence shapes (336 px image, 576 image tokens, 32064-token vocabulary,
77 new tokens) through a few narrow layers (REDUCED_*), which measures the stage's overheads, not a 7B model.

usage: python -m bench.caption [--SIZE=full] [--BATCH_SIZES=1,16,32]
"""
import resource
import time

from core import devices, knobs
from preprocessing import caption

SIZE = "auto"  # full (the 7B shapes) | reduced (REDUCED_* layers and widths) | auto: full on CUDA, reduced on a CPU
BATCH_SIZES = (1, caption.BATCH_SIZE)  # rows per generate call: one at a time (the seed's way) and the stage's default
PROMPT_TOKENS = 100  # text tokens per row besides the image: chat template + the seed's question + the ad copy
MAX_NEW_TOKENS = caption.MAX_NEW_TOKENS  # every row generates exactly this many (no early end)
TEMPERATURE = caption.TEMPERATURE  # sampling with the stage's per-row sampler
ROWS = 1362  # the projection: the training banners
REPEATS = 2  # timed generate calls per batch size, after one warm-up call
DEVICE = "auto"  # auto | cuda | cpu
DTYPE = "fp16"  # fp16 | bf16 on CUDA; the CPU always runs fp32
CPU_THREADS = 0  # torch threads on the CPU; 0 = torch's default
REDUCED_TEXT_LAYERS = 2  # reduced size: Llama decoder layers (full: 32)
REDUCED_TEXT_HIDDEN = 256  # reduced size: Llama width (full: 4096; heads of 128 as in the real model)
REDUCED_VISION_LAYERS = 2  # reduced size: CLIP vision layers (full: 24)
REDUCED_VISION_HIDDEN = 128  # reduced size: CLIP vision width (full: 1024; heads of 64)

_IMAGE_SIZE, _PATCH = 336, 14  # CLIP ViT-L/14-336: (336 / 14)^2 = 576 image tokens
_VOCAB, _IMAGE_TOKEN_ID = 32064, 32000


def llava_config(full, cfg):
    """llava-hf/llava-1.5-7b-hf's architecture; reduced: fewer, narrower layers, the same sequence shapes."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    text_hidden = 4096 if full else cfg.REDUCED_TEXT_HIDDEN
    vision_hidden = 1024 if full else cfg.REDUCED_VISION_HIDDEN
    text = LlamaConfig(vocab_size=_VOCAB, hidden_size=text_hidden, intermediate_size=11008 if full else 4 * text_hidden,
                       num_hidden_layers=32 if full else cfg.REDUCED_TEXT_LAYERS,
                       num_attention_heads=text_hidden // 128, num_key_value_heads=text_hidden // 128,
                       max_position_embeddings=4096, rms_norm_eps=1e-5,
                       bos_token_id=1, eos_token_id=2, pad_token_id=32001, tie_word_embeddings=False)
    vision = CLIPVisionConfig(hidden_size=vision_hidden, intermediate_size=4 * vision_hidden,
                              num_hidden_layers=24 if full else cfg.REDUCED_VISION_LAYERS,
                              num_attention_heads=vision_hidden // 64, image_size=_IMAGE_SIZE, patch_size=_PATCH,
                              projection_dim=768, hidden_act="quick_gelu")
    return LlavaConfig(vision_config=vision, text_config=text, image_token_id=_IMAGE_TOKEN_ID,
                       projector_hidden_act="gelu", vision_feature_layer=-2, vision_feature_select_strategy="default",
                       tie_word_embeddings=False)


def build_model(config, device, dtype):
    """Random weights made directly on the device in the target dtype (7B in fp32 on the CPU first: minutes)."""
    import torch
    from transformers import LlavaForConditionalGeneration

    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    return model.eval()


def make_inputs(batch_size, prompt_tokens, device, dtype, seed=0):
    """What the processor gives for one banner and its question: a few template tokens, 576 image tokens, the text."""
    import torch

    g = torch.Generator().manual_seed(seed)
    head, tail = 5, prompt_tokens - 5
    text = torch.randint(3, _IMAGE_TOKEN_ID, (batch_size, prompt_tokens), generator=g)
    image = torch.full((batch_size, (_IMAGE_SIZE // _PATCH) ** 2), _IMAGE_TOKEN_ID)
    input_ids = torch.cat([text[:, :head], image, text[:, head:head + tail]], dim=1)
    return dict(input_ids=input_ids.to(device), attention_mask=torch.ones_like(input_ids).to(device),
                pixel_values=torch.randn(batch_size, 3, _IMAGE_SIZE, _IMAGE_SIZE, generator=g).to(device, dtype))


def time_generate(model, inputs, cfg, device):
    """Seconds for one generate call of exactly MAX_NEW_TOKENS new tokens per row (the stage's sampler)."""
    import torch

    rows, prompt_length = inputs["input_ids"].shape
    from core.sampling import RowSampler

    sampler = RowSampler(range(rows), (inputs["attention_mask"] == 0).sum(1), True, temperature=cfg.TEMPERATURE)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=cfg.MAX_NEW_TOKENS, min_new_tokens=cfg.MAX_NEW_TOKENS,
                             do_sample=False, logits_processor=[sampler])
    sync()
    assert out.shape[1] == prompt_length + cfg.MAX_NEW_TOKENS
    return time.perf_counter() - start


def time_preprocessing(n=16):
    """CPU milliseconds per banner for LLaVA-1.5's image processor (resize to 336, crop, normalise) on 1024x533."""
    import numpy as np
    from PIL import Image
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"shortest_edge": _IMAGE_SIZE},
                                   crop_size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE})
    banners = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (533, 1024, 3), dtype=np.uint8))
               for i in range(n)]
    processor(images=banners[:2], return_tensors="pt")
    start = time.perf_counter()
    processor(images=banners, return_tensors="pt")
    return (time.perf_counter() - start) / n * 1000


def main(argv=None):
    import torch

    cfg = knobs.configure(globals(), argv)
    device = devices.pick_device(cfg.DEVICE)
    dtype = devices.pick_dtype(device, cfg.DTYPE)
    if cfg.CPU_THREADS and device == "cpu":
        torch.set_num_threads(cfg.CPU_THREADS)
    if cfg.SIZE not in ("auto", "full", "reduced"):
        raise knobs.InputError(f"SIZE must be auto, full or reduced, got {cfg.SIZE!r}")
    full = cfg.SIZE == "full" or cfg.SIZE == "auto" and device.startswith("cuda")
    started = time.perf_counter()
    model = build_model(llava_config(full, cfg), device, dtype)
    params = sum(p.numel() for p in model.parameters())
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"CPU, {threads} threads"
    print(f"LLaVA-1.5-7B architecture, {'FULL size' if full else 'REDUCED (CPU)'}: {params / 1e9:.2f} B parameters, "
          f"{dtype}, {name}; built in {time.perf_counter() - started:.1f} s")
    print(f"per row: 576 image + {cfg.PROMPT_TOKENS} text prompt tokens, {cfg.MAX_NEW_TOKENS} new tokens (sampled, "
          f"temperature {cfg.TEMPERATURE}); image preprocessing on this CPU: {time_preprocessing():.1f} ms/banner")
    results = {}
    for batch_size in cfg.BATCH_SIZES:
        inputs = make_inputs(batch_size, cfg.PROMPT_TOKENS, device, dtype)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        try:
            time_generate(model, inputs, cfg, device)  # warm-up
            seconds = min(time_generate(model, inputs, cfg, device) for _ in range(cfg.REPEATS))
        except torch.OutOfMemoryError:
            print(f"batch {batch_size:>3}: out of memory")
            continue
        rate = batch_size / seconds
        peak = (f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB GPU peak" if device.startswith("cuda")
                else f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB process peak RSS")
        results[batch_size] = rate
        print(f"batch {batch_size:>3}: {seconds:.2f} s per call, {rate:.2f} images/s, {1 / rate:.3f} s/image, {peak}; "
              f"{cfg.ROWS} banners in {cfg.ROWS / rate / 60:.1f} min")
    if len(results) > 1:
        first, last = min(results), max(results)
        print(f"batch {last} vs batch {first}: {results[last] / results[first]:.1f}x the images/s")


if __name__ == "__main__":
    knobs.run_main(main)
