"""
Benchmark the translation stage: (1) how much work "translate each distinct string once" saves on an info.csv, and
(2) strings/s of the seq2seq backend one string at a time vs batched (file order, and sorted by length as the stage
does), on the same model, the same strings and the same generation settings.

MODEL "" means the tiny random smoke model (the only seq2seq model on a machine without the model hub): its figures
measure the stage's overhead and batching, not a real translator's speed. Point MODEL at a real one to measure it:
  python -m bench.translation --MODEL=Helsinki-NLP/opus-mt-vi-en --INFO=data/train/info.csv

usage: python -m bench.translation [--INFO=...] [--MODEL=...] [--N_STRINGS=256] [--help]
"""
import random
import time
from collections import Counter

from core import dataset, knobs
from preprocessing import translate as tr

DATA_DIR = "data"  # the data folder (also from env DATA_DIR)
INFO = ""  # info.csv to measure; "" = $DATA_DIR/train/info.csv
MODEL = ""  # seq2seq model (hub id or folder); "" = the tiny random smoke model
N_STRINGS = 256  # distinct strings timed in each mode (a random sample of the file's, fixed seed)
BATCH_SIZE = 32  # batch size of the batched modes
NUM_BEAMS = 1  # beam width in every mode (the stage's default is 5)
MAX_NEW_TOKENS = 64  # output length cap in every mode
DEVICE = "auto"  # auto | cuda | cpu
DTYPE = "fp16"  # on CUDA; the CPU runs fp32
CPU_THREADS = 0  # torch threads on the CPU; 0 = torch's default
SEED = 0  # which strings are sampled


def distinct_report(frame):
    """Per text field and overall: non-empty fields vs distinct normalised strings."""
    print(f"{'field':<12}{'non-empty':>10}{'distinct':>10}{'saved':>8}   most repeated")
    everything = Counter()
    for column in dataset.TEXT_COLUMNS:
        counts = Counter(p for v in frame[column] if (p := tr.prepare(v)))
        everything.update(counts)
        total, distinct = sum(counts.values()), len(counts)
        top, n = counts.most_common(1)[0] if counts else ("", 0)
        print(f"{column:<12}{total:>10}{distinct:>10}{1 - distinct / max(total, 1):>8.1%}   {n}x {top[:50]!r}")
    total, distinct = sum(everything.values()), len(everything)
    print(f"{'all fields':<12}{total:>10}{distinct:>10}{1 - distinct / max(total, 1):>8.1%}   "
          f"(distinct across fields: a string in two fields is translated once)")
    disclaimer = Counter(p for v in frame["moreInfo"] if "không phải là thuốc" in (p := tr.prepare(v)).lower())
    print(f"rows with the 'not a medicine' disclaimer in moreInfo: {sum(disclaimer.values())} "
          f"({sum(disclaimer.values()) / max(len(frame), 1):.0%}), in {len(disclaimer)} distinct wordings")
    raw = len({v for c in dataset.TEXT_COLUMNS for v in frame[c] if v})
    print(f"distinct before normalisation (NFC, whitespace): {raw}; after: {distinct}")
    return list(everything)


def timed(translator, texts, batch_size):
    translator.calls = 0
    started = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        out = translator.translate_batch(texts[i:i + batch_size])
        assert len(out) == len(texts[i:i + batch_size])
    seconds = time.perf_counter() - started
    return len(texts) / seconds, seconds, translator.calls


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    stage = knobs.configure(tr, [], env={})  # the translation stage's own defaults (language codes, blank guard)
    path = cfg.INFO or dataset.split_dir("train", cfg.DATA_DIR) / "info.csv"
    frame = dataset.read_info(path)
    print(f"{path}: {len(frame)} rows")
    strings = distinct_report(frame)
    model = cfg.MODEL or __import__("smoke").smoke_model("seq2seq")
    texts = random.Random(cfg.SEED).sample(strings, min(cfg.N_STRINGS, len(strings)))
    translator = tr.Seq2SeqTranslator(model, cfg.DEVICE, cfg.DTYPE, cfg.BATCH_SIZE, 0, cfg.MAX_NEW_TOKENS,
                                      cfg.NUM_BEAMS, stage.SRC_LANG, stage.TGT_LANG, stage.TGT_LANG_AS,
                                      stage.TRUST_REMOTE_CODE, stage.SUPPRESS_BLANK_START, cpu_threads=cfg.CPU_THREADS,
                                      smoke=False)  # times the model it names (MODEL "": the stand-in, by path)
    import torch

    print(f"\nmodel: {model}{'  (SMOKE: tiny random model, not a real translator)' if not cfg.MODEL else ''}")
    print(f"device {translator.device}, torch threads {torch.get_num_threads()}, {len(texts)} strings "
          f"(mean {sum(map(len, texts)) / len(texts):.0f} chars), beams {cfg.NUM_BEAMS}, max new tokens "
          f"{cfg.MAX_NEW_TOKENS}")
    translator.translate_batch(texts[:cfg.BATCH_SIZE])  # warm-up: first-call allocations and kernel selection
    by_length = sorted(texts, key=len, reverse=True)
    single = timed(translator, texts, 1)
    batched = timed(translator, texts, cfg.BATCH_SIZE)
    batched_sorted = timed(translator, by_length, cfg.BATCH_SIZE)
    for name, (rate, seconds, calls) in [("one at a time", single), (f"batched {cfg.BATCH_SIZE}, file order", batched),
                                         (f"batched {cfg.BATCH_SIZE}, sorted by length", batched_sorted)]:
        print(f"{name:<34}{rate:>9.1f} strings/s  ({seconds:.2f} s, {calls} generate calls)")
    print(f"ratio batched/one-at-a-time: {batched[0] / single[0]:.1f}x (file order), "
          f"{batched_sorted[0] / single[0]:.1f}x (sorted by length)")


if __name__ == "__main__":
    knobs.run_main(main)
