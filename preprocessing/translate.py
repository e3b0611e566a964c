"""
Translate the Vietnamese ad copy into English: $DATA_DIR/{train,test}/info.csv -> info_trans.csv beside each.

caption, description and moreInfo are translated; every other column (id, bannerImage, ...) is copied as is, rows keep
their order, an empty field stays empty. Each distinct string (after Unicode NFC + collapsed whitespace) is translated
once across both splits (the "not a medicine" disclaimer is in 23 % of train rows), longest first in batches so a
batch holds strings of similar length (less padding, and an out-of-memory shows up at once, not at the end).

Backends (BACKEND):
  seq2seq  any transformers translation model, hub id or local folder, batched on GPU or CPU (SEQ2SEQ_MODEL).
  google   Google Translate through deep-translator (online, what the seed used): retries with exponential backoff,
           a bounded request rate, a timeout per request. A service that cannot be reached at all (no network, DNS
           failure, connection refused) stops the run at once with one line naming --BACKEND=seq2seq; rate limits
           and server errors are retried.
  auto     seq2seq when HF_HUB_OFFLINE=1 or SMOKE=1 (offline), else google.

Every translation goes into a JSON cache on disk (CACHE) keyed by the translator's settings + text (seq2seq: the
model, language codes, beams, token limits, blank-start guard and the dtype it runs in; google: the language pair),
saved atomically after each batch: a rerun or a resumed run translates only what is missing, and loads no model when
nothing is. A translation made with other settings is never reused: the run says how many such entries the cache
holds and translates anew.
If a string still fails (after the retries), the run names the first few (split, row id, field), writes the full list
to translation_failures.json beside the cache, and exits 1 without writing that split's info_trans.csv.

usage: bash run/translation.sh [--BACKEND=seq2seq] [--SEQ2SEQ_MODEL=Helsinki-NLP/opus-mt-vi-en] [--help]
"""
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import models
from core import batching, dataset, devices, files, knobs
from core.copy_text import normalize_copy
from core.errors import error_list
from core.progress import progress as progress_bar

DATA_DIR = "data"  # the data folder with {train,test}/info.csv (also from env DATA_DIR)
BACKEND = "auto"  # auto | seq2seq | google; auto = seq2seq when HF_HUB_OFFLINE=1 or SMOKE=1, else google
SEQ2SEQ_MODEL = models.TRANSLATOR  # hub id[@revision] or local folder (e.g. Helsinki-NLP/opus-mt-vi-en); SMOKE=1: tiny random model
SRC_LANG = "vi_VN"  # source language code, set only on tokenizers that know it (mBART: vi_VN; NLLB: vie_Latn)
TGT_LANG = "en_XX"  # target language token, used only if the tokenizer knows it (mBART: en_XX; NLLB: eng_Latn)
TGT_LANG_AS = "decoder_start"  # decoder_start (vinai-translate, mBART-cc25) | forced_bos (mBART-50, NLLB)
BATCH_SIZE = 32  # strings per generate call (halved automatically on out-of-memory, core/batching.py)
MAX_INPUT_TOKENS = 0  # longer inputs are truncated (with a warning); 0 = the tokenizer's model_max_length
MAX_NEW_TOKENS = 256  # upper bound on a translation's length in tokens
NUM_BEAMS = 5  # beam search width (vinai's documented setting); 1 = greedy
DEVICE = "auto"  # auto | cuda | cuda:1 | cpu
DTYPE = "fp16"  # fp16 | bf16 | fp32 on CUDA; the CPU always runs fp32
CPU_THREADS = 0  # torch threads on the CPU; 0 = torch's default (1 is far faster on a busy, shared machine)
TRUST_REMOTE_CODE = False  # allow model repos that ship their own Python code (off: a security risk)
SUPPRESS_BLANK_START = True  # forbid a first token that decodes to blank (random/weak models otherwise emit "")
GOOGLE_SOURCE = "vi"  # Google Translate source language
GOOGLE_TARGET = "en"  # Google Translate target language
GOOGLE_RETRIES = 5  # extra attempts per string after a network error, rate limit or empty answer
GOOGLE_BACKOFF = 2.0  # seconds before the first retry; doubles each retry
GOOGLE_BACKOFF_MAX = 60.0  # cap on one backoff wait, seconds
GOOGLE_MIN_INTERVAL = 0.5  # at least this many seconds between two requests (bounded request rate)
GOOGLE_TIMEOUT = 20.0  # seconds before one request counts as failed (deep-translator itself never times out)
GOOGLE_GIVE_UP_AFTER = 5  # this many strings failing in a row means the service is down: stop, list the rest
SPLITS = "train,test"  # comma-separated split folders under DATA_DIR; a missing one is an error
CACHE = ""  # translation cache file; "" = $DATA_DIR/translation_cache.json
LOWERCASE = False  # lower-case every string before translating (the seed's behaviour; loses brand-name casing)
PROGRESS = True  # show the progress bar (strings/s) when the output is a terminal
# SMOKE=1: the tiny random model, greedy, short outputs, small batches: exercises every path in seconds
SMOKE_OVERRIDES = dict(BATCH_SIZE=8, MAX_NEW_TOKENS=16, NUM_BEAMS=1)


class ServiceDown(Exception):
    """The translation service keeps failing: stop asking it; the strings not yet done are listed as failed."""


def unreachable(error):
    """True when `error` is a failure to resolve the host or to connect at all (no network, DNS, refused): unlike a
    rate limit (429), a server error (5xx) or a dropped connection, retrying it cannot help."""
    import socket

    from urllib3.exceptions import NewConnectionError  # NameResolutionError is one of these

    seen, todo = set(), [error]
    while todo:  # requests wraps urllib3's MaxRetryError, whose .reason is the socket-level error
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (NewConnectionError, socket.gaierror, ConnectionRefusedError)):
            return True
        todo += [getattr(e, "reason", None), e.__cause__, e.__context__]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return False


# ----------------------------------------------------------------------------------------------------------------------
# choosing the backend and naming its cache entries


def resolve_backend(backend, smoke, env=None):
    """'auto' -> 'seq2seq' when offline (HF_HUB_OFFLINE=1, which the HF libraries read too) or `smoke` (the run's
    cfg.SMOKE), else 'google'."""
    env = os.environ if env is None else env
    if backend == "auto":
        offline = env.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        return "seq2seq" if offline or smoke else "google"
    if backend not in ("seq2seq", "google"):
        raise knobs.InputError(f"BACKEND must be auto, seq2seq or google, got {backend!r}")
    return backend


def seq2seq_tag(cfg, model, dtype):
    """Cache namespace of a seq2seq setup: every setting that changes the text it produces (not batch size, device or
    threads). `model`: the resolved model (SMOKE=1: the tiny one); `dtype`: what it runs in (the CPU: float32)."""
    return (f"seq2seq|{model}|{cfg.SRC_LANG}>{cfg.TGT_LANG}:{cfg.TGT_LANG_AS}|beams={cfg.NUM_BEAMS}"
            f"|max_new={cfg.MAX_NEW_TOKENS}|max_in={cfg.MAX_INPUT_TOKENS}"
            f"|blank_start={'suppressed' if cfg.SUPPRESS_BLANK_START else 'allowed'}|dtype={dtype}")


def google_tag(source, target):
    return f"google|{source}>{target}"


def cache_key(tag, text):
    return f"{tag}\t{text}"


def other_settings(store, tag):
    """{tag: entries} of the cache's translations made with other settings than `tag` (not reused by this run)."""
    counts = {}
    for key in store.data:
        other = key.split("\t", 1)[0]
        if other != tag:
            counts[other] = counts.get(other, 0) + 1
    return counts


def prepare(text, lowercase=False):
    """The string that is translated and cached: NFC + collapsed whitespace, optionally lower-cased."""
    text = normalize_copy(text)  # the one copy rule: invisible characters out, spaces collapsed, NFC
    return text.lower() if lowercase else text


# ----------------------------------------------------------------------------------------------------------------------
# seq2seq backend: any transformers encoder-decoder translation model


class Seq2SeqTranslator:
    """Batched translation with `model.generate` (transformers 5 removed the translation pipeline)."""

    name = "seq2seq"

    def __init__(self, model, device="auto", dtype="fp16", batch_size=32, max_input_tokens=0, max_new_tokens=256,
                 num_beams=5, src_lang="", tgt_lang="", tgt_lang_as="decoder_start", trust_remote_code=False,
                 suppress_blank_start=True, model_key="translator", cpu_threads=0, *, smoke):
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        if tgt_lang_as not in ("decoder_start", "forced_bos"):
            raise knobs.InputError(f"TGT_LANG_AS must be decoder_start or forced_bos, got {tgt_lang_as!r}")
        self.torch = torch
        self.device = devices.pick_device(device)
        if cpu_threads and self.device == "cpu":
            torch.set_num_threads(cpu_threads)
        self.batch_size, self.max_new_tokens, self.num_beams = batch_size, max_new_tokens, num_beams
        self.batches = batching.FittingBatches(batch_size, "strings", lambda m: print(m, file=sys.stderr, flush=True))
        self.tokenizer = models.load(AutoTokenizer.from_pretrained, model, model_key, smoke=smoke,
                                     trust_remote_code=trust_remote_code)
        # dtype: fp16/bf16 on CUDA, fp32 on the CPU; a torch dtype as is (tests run bf16 on the CPU)
        self.model = models.load(AutoModelForSeq2SeqLM.from_pretrained, model, model_key, smoke=smoke,
                                 dtype=devices.pick_dtype(self.device, dtype),
                                 trust_remote_code=trust_remote_code).to(self.device).eval()
        self.max_input_tokens = max_input_tokens or self._model_max_length()
        self.generate_kwargs = dict(max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
                                    min_new_tokens=1)
        if num_beams > 1:
            self.generate_kwargs["early_stopping"] = True
        self.notes = []  # what was applied, for the log
        # codes the tokenizer does not have: right for a one-pair model (opus-mt-vi-en), a wrong knob for mBART/NLLB
        self.unknown_codes = [c for c in (src_lang, tgt_lang) if c and not self._knows(c)]
        if src_lang and self._knows(src_lang) and hasattr(self.tokenizer, "src_lang"):
            self.tokenizer.src_lang = src_lang
            self.notes.append(f"src_lang={src_lang}")
        forced = []
        if tgt_lang and self._knows(tgt_lang):
            tgt_id = self.tokenizer.convert_tokens_to_ids(tgt_lang)
            if tgt_lang_as == "decoder_start":
                self.generate_kwargs["decoder_start_token_id"] = tgt_id
            else:
                self.generate_kwargs["forced_bos_token_id"] = tgt_id
                self.generate_kwargs["min_new_tokens"] = 2  # the forced language token is generated, not content
                forced.append(tgt_id)
            self.notes.append(f"{tgt_lang_as}={tgt_lang}")
        if suppress_blank_start:
            from core.sampling import blank_token_ids

            blank = [i for i in blank_token_ids(self.tokenizer) if i not in forced]
            if blank:
                self.generate_kwargs["begin_suppress_tokens"] = blank
        self.calls = 0  # generate() calls, so callers and tests can check that cached work is never redone
        self.truncated = 0  # inputs longer than max_input_tokens
        self.cut_short = 0  # translations that reached max_new_tokens before their end-of-sequence token

    def _knows(self, token):
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        return token_id is not None and token_id != self.tokenizer.unk_token_id

    def _model_max_length(self):
        limits = [self.tokenizer.model_max_length, getattr(self.model.config, "max_position_embeddings", None)]
        limits = [n for n in limits if isinstance(n, int) and 0 < n < 100_000]  # tokenizers say 1e30 for "unknown"
        return min(limits) if limits else 512

    def _generate(self, texts):
        torch = self.torch
        probe = self.tokenizer(texts, truncation=True, max_length=self.max_input_tokens + 1)["input_ids"]
        self.truncated += sum(len(ids) > self.max_input_tokens for ids in probe)
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_input_tokens, padding=True,
                             return_tensors="pt")
        # only what an encoder-decoder's generate takes: some tokenizers add token_type_ids that BART/Marian reject
        inputs = {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask") if k in enc}
        self.calls += 1
        with torch.inference_mode():
            out = self.model.generate(**inputs, **self.generate_kwargs)
        eos = self.model.generation_config.eos_token_id
        ended = torch.isin(out[:, 1:], torch.as_tensor(eos if isinstance(eos, list) else [eos], device=out.device))
        self.cut_short += int((~ended.any(1)).sum()) if eos is not None else 0
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def translate_batch(self, texts):
        """One translation per text; an empty translation, or an out-of-memory on a text alone, comes back as an
        Exception in that text's place. Out-of-memory on several texts: smaller batches from then on (core/batching)."""
        return self.batches.run(self._translate_part, list(texts))

    def _translate_part(self, texts):
        try:
            outputs = self._generate(texts)
        except self.torch.OutOfMemoryError as e:
            if len(texts) > 1:
                raise  # FittingBatches halves the batch
            return [e]
        return [out if out else ValueError("empty translation") for out in outputs]


# ----------------------------------------------------------------------------------------------------------------------
# google backend: one HTTP request per string, so the policy (rate, retries, backoff, timeout) matters


def call_with_timeout(fn, arg, timeout):
    """fn(arg), or TimeoutError after `timeout` s. deep-translator calls requests.get without a timeout, so a stalled
    connection would hang the run forever; the call runs in a daemon thread that is abandoned if it stalls."""
    result = {}

    def target():
        try:
            result["value"] = fn(arg)
        except BaseException as e:  # handed to the caller's thread
            result["error"] = e

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def google_translate_fn(source="vi", target="en", timeout=20.0, url=None):
    """The online service as a callable text -> text (a fresh GoogleTranslator per call: an abandoned, timed-out
    call must not share URL parameters with the next one). `url` replaces the service's address (tests point it at a
    stand-in on 127.0.0.1)."""
    from deep_translator import GoogleTranslator

    def translate(text):
        service = GoogleTranslator(source=source, target=target)
        if url:
            service._base_url = url
        return call_with_timeout(service.translate, text, timeout)

    return translate


def permanent_errors():
    """deep-translator errors that a retry cannot fix (bad payload, too long, unsupported language)."""
    from deep_translator import exceptions as ex

    return (ex.NotValidPayload, ex.NotValidLength, ex.LanguageNotSupportedException, ex.InvalidSourceOrTargetLanguage)


@dataclass
class RetryingTranslator:
    """Wraps a text -> text callable (the online service) with the failure policy.

    - at least `min_interval` s between two calls (the bounded request rate);
    - a call that raises, or answers nothing, is retried up to `retries` times after `backoff`, 2*backoff, 4*backoff
      ... seconds (capped at `backoff_max`); errors in `permanent` are not retried;
    - after `give_up_after` strings in a row that failed every attempt, ServiceDown is raised.
    `sleep` and `clock` are injectable so a test runs the policy without waiting.
    """

    translate_fn: object
    retries: int = 5
    backoff: float = 2.0
    backoff_max: float = 60.0
    min_interval: float = 0.5
    give_up_after: int = 5
    permanent: tuple = ()
    is_unreachable: object = unreachable  # error -> True: the service cannot be reached, so no retry helps
    sleep: object = time.sleep
    clock: object = time.monotonic
    name: str = "google"
    batch_size: int = 1  # one request per string; the cache is saved after each
    calls: int = 0
    failed_in_a_row: int = 0
    _last_call: float = field(default=None, repr=False)

    def _wait_for_slot(self):
        if self._last_call is not None:
            wait = self.min_interval - (self.clock() - self._last_call)
            if wait > 0:
                self.sleep(wait)
        self._last_call = self.clock()

    def translate_one(self, text):
        """The translation, or the last error if every attempt failed."""
        error = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(min(self.backoff * 2 ** (attempt - 1), self.backoff_max))
            self._wait_for_slot()
            self.calls += 1
            try:
                out = self.translate_fn(text)
            except self.permanent as e:
                return e
            except Exception as e:  # network errors, HTTP 429/5xx, a page without a translation: retry
                if self.is_unreachable(e):
                    raise knobs.InputError(
                        f"the {self.name} translation service cannot be reached ({describe_short(e)}): no network "
                        f"here? Translate offline with --BACKEND=seq2seq (strings done so far are cached)") from None
                error = e
                continue
            if isinstance(out, str) and out.strip():
                return out.strip()
            error = ValueError(f"empty answer {out!r}")
        return error

    def translate_batch(self, texts):
        results = []
        for text in texts:
            out = self.translate_one(text)
            results.append(out)
            if not isinstance(out, Exception):
                self.failed_in_a_row = 0
            elif not isinstance(out, self.permanent):  # e.g. a string over the length limit says nothing of the service
                self.failed_in_a_row += 1
            if self.give_up_after and self.failed_in_a_row >= self.give_up_after:
                raise ServiceDown(f"{self.failed_in_a_row} strings in a row failed after {self.retries} retries "
                                  f"each (last error: {describe(out)}); stopped asking the service")
        return results


def describe(error):
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def describe_short(error):
    """The innermost reason of a network error in a few words (requests' own message is a paragraph)."""
    import socket

    reason = getattr(getattr(error, "args", [None])[0], "reason", None) if getattr(error, "args", None) else None
    for e in (reason, error.__cause__, error):
        if isinstance(e, socket.gaierror) or "NameResolution" in type(e).__name__:
            return "the host name does not resolve"
        if isinstance(e, ConnectionRefusedError) or "refused" in str(e).lower():
            return "connection refused"
    return type(error).__name__


# ----------------------------------------------------------------------------------------------------------------------
# the run: read the splits, translate what the cache lacks, write the splits that are complete


def translate_missing(texts, make_translator, store, tag, progress=True):
    """Translate every text whose key is not in `store`, longest first, saving the store after each batch.

    `make_translator()` is called only if something is missing (a rerun loads no model); the translator has
    `name`, `batch_size` and `translate_batch(texts) -> [str or Exception]`. Returns (translator or None, number of
    texts translated now, {text: reason} of the failures); translator.seconds is the time spent translating.
    """
    todo = sorted({t for t in texts if t and cache_key(tag, t) not in store}, key=lambda t: (-len(t), t))
    if not todo:
        return None, 0, {}
    translator = make_translator()
    failures, done, started = {}, 0, time.perf_counter()
    bar = progress_bar(total=len(todo), unit="str", desc=f"translate ({translator.name})", disable=not progress)
    try:
        for start in range(0, len(todo), translator.batch_size):
            batch = todo[start:start + translator.batch_size]
            try:
                results = translator.translate_batch(batch)
            except ServiceDown as e:
                failures.update({t: str(e) for t in todo[start:] if t not in failures})
                break
            if len(results) != len(batch):
                raise RuntimeError(f"{translator.name} returned {len(results)} results for {len(batch)} strings")
            for text, result in zip(batch, results):
                if isinstance(result, str) and result:
                    store.put(cache_key(tag, text), result)
                    done += 1
                else:
                    failures[text] = describe(result)
            store.save()
            bar.update(len(batch))
            if failures:
                bar.set_postfix(failed=len(failures))
    finally:
        store.save()  # everything that succeeded survives a crash or Ctrl-C
        bar.close()
    translator.seconds = time.perf_counter() - started  # translation only, not the model load
    return translator, done, failures


@dataclass
class SplitInfo:
    name: str
    path: Path
    frame: object  # pandas DataFrame from dataset.read_info
    texts: list  # (row id, column, prepared text) of every non-empty field


def read_split(root, name, lowercase=False):
    path = dataset.split_dir(name, root) / "info.csv"
    frame = dataset.read_info(path)
    texts = []
    for row in frame.itertuples(index=False):
        for column in dataset.TEXT_COLUMNS:
            prepared = prepare(getattr(row, column), lowercase)
            if prepared:
                texts.append((row.id, column, prepared))
    return SplitInfo(name, path, frame, texts)


def translated_frame(split, store, tag, lowercase=False):
    """The split's rows with the text columns replaced by their cached translations ("" stays "")."""
    frame = split.frame.copy()
    for column in dataset.TEXT_COLUMNS:
        frame[column] = [store[cache_key(tag, p)] if (p := prepare(v, lowercase)) else ""
                         for v in split.frame[column]]
    return frame


def run(root, splits, make_translator, tag, cache_path, lowercase=False, progress=True, log=print):
    """Translate the splits under `root`; write each complete split's info_trans.csv. Returns a stats dict whose
    "failures" lists {split, id, field, text, reason} for every field left untranslated."""
    infos = [read_split(root, name, lowercase) for name in splits]
    all_texts = [t for info in infos for (_, _, t) in info.texts]
    distinct = set(all_texts)
    for info in infos:
        log(f"{info.name}: {len(info.frame)} rows, {len(info.texts)} non-empty fields, "
            f"{len({t for _, _, t in info.texts})} distinct strings")
    store = files.JsonStore(cache_path, every=10**9)  # saved explicitly after each batch
    cached = sum(cache_key(tag, t) in store for t in distinct)
    log(f"all splits: {len(all_texts)} non-empty fields, {len(distinct)} distinct strings, {cached} already in the "
        f"cache {cache_path}, {len(distinct) - cached} to translate")
    others = other_settings(store, tag)
    if others:
        log(f"note: the cache also holds {sum(others.values())} translations made with other settings, not reused "
            f"here (this run: {tag}; " + "; ".join(f"{n} with {t}" for t, n in list(others.items())[:3]) + ")")
    translator, done, failed = translate_missing(distinct, make_translator, store, tag, progress)
    seconds = getattr(translator, "seconds", 0.0)
    stats = dict(fields=len(all_texts), distinct=len(distinct), cached=cached, translated=done,
                 model_calls=getattr(translator, "calls", 0), truncated=getattr(translator, "truncated", 0),
                 cut_short=getattr(translator, "cut_short", 0),
                 seconds=seconds, written=[], failures=[])
    if translator is not None:
        log(f"translated {done} strings in {seconds:.1f} s ({done / max(seconds, 1e-9):.1f} strings/s), "
            f"{stats['model_calls']} {translator.name} calls")
    if stats["truncated"]:
        log(f"warning: {stats['truncated']} strings were longer than the model's input limit and were truncated")
    if stats["cut_short"]:
        log(f"warning: {stats['cut_short']} translations reached MAX_NEW_TOKENS before their end and were cut: raise "
            f"--MAX_NEW_TOKENS")
    for info in infos:
        bad = [dict(split=info.name, id=i, field=c, text=t, reason=failed[t]) for i, c, t in info.texts if t in failed]
        out = info.path.with_name("info_trans.csv")
        if bad:
            stats["failures"].extend(bad)
            if out.exists():
                log(f"note: {out} was NOT updated; the file there is from an earlier run")
            continue
        files.write_csv(out, translated_frame(info, store, tag, lowercase))
        files.write_json(out.with_name(dataset.TRANSLATION_RECORD), {"info_csv_sha256": files.file_hash(info.path)})
        stats["written"].append(str(out))
        log(f"wrote {out} ({len(info.frame)} rows)")
    log(f"model calls: {stats['model_calls']}")
    return stats


def report_failures(failures, path, log=print):
    files.write_json(path, failures)
    names = [f"{f['split']} row id={f['id']} field={f['field']} ({f['reason']})" for f in failures]
    log(f"error: {len(failures)} field(s) could not be translated; their splits' info_trans.csv were NOT written "
        f"(everything else is cached: rerun to retry only these): {error_list(names, path, write=False)}")


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    backend = resolve_backend(cfg.BACKEND, cfg.SMOKE)
    root = Path(cfg.DATA_DIR)
    splits = [s.strip() for s in cfg.SPLITS.split(",") if s.strip()]
    if not splits:
        raise knobs.InputError("SPLITS is empty")
    cache_path = Path(cfg.CACHE) if cfg.CACHE else root / "translation_cache.json"
    failures_path = cache_path.with_name("translation_failures.json")
    if backend == "seq2seq":
        knobs.announce_smoke("translation", cfg.SMOKE)
        model = models.path(cfg.SEQ2SEQ_MODEL, "translator", smoke=cfg.SMOKE)
        dtype = str(devices.pick_dtype(devices.pick_device(cfg.DEVICE), cfg.DTYPE)).removeprefix("torch.")
        tag = seq2seq_tag(cfg, model, dtype)

        def make_translator():
            print(f"loading {model} ...", file=sys.stderr, flush=True)
            t = Seq2SeqTranslator(model, cfg.DEVICE, cfg.DTYPE, cfg.BATCH_SIZE, cfg.MAX_INPUT_TOKENS,
                                  cfg.MAX_NEW_TOKENS, cfg.NUM_BEAMS, cfg.SRC_LANG, cfg.TGT_LANG, cfg.TGT_LANG_AS,
                                  cfg.TRUST_REMOTE_CODE, cfg.SUPPRESS_BLANK_START, cpu_threads=cfg.CPU_THREADS,
                                  smoke=cfg.SMOKE)
            print(f"seq2seq on {t.device}, batch {cfg.BATCH_SIZE}, beams {cfg.NUM_BEAMS}, max input "
                  f"{t.max_input_tokens} tokens" + (f", {', '.join(t.notes)}" if t.notes else ""),
                  file=sys.stderr, flush=True)
            if t.unknown_codes and not cfg.SMOKE:  # the tiny smoke model has none, by design
                print(f"note: {cfg.SEQ2SEQ_MODEL} has no token {' / '.join(t.unknown_codes)}, so no language code is "
                      f"set: right for a one-pair model (e.g. Helsinki-NLP/opus-mt-vi-en); an mBART/NLLB model "
                      f"needs its own codes in --SRC_LANG/--TGT_LANG (NLLB: vie_Latn/eng_Latn)",
                      file=sys.stderr, flush=True)
            return t
    else:
        tag = google_tag(cfg.GOOGLE_SOURCE, cfg.GOOGLE_TARGET)

        def make_translator():
            return RetryingTranslator(google_translate_fn(cfg.GOOGLE_SOURCE, cfg.GOOGLE_TARGET, cfg.GOOGLE_TIMEOUT),
                                      cfg.GOOGLE_RETRIES, cfg.GOOGLE_BACKOFF, cfg.GOOGLE_BACKOFF_MAX,
                                      cfg.GOOGLE_MIN_INTERVAL, cfg.GOOGLE_GIVE_UP_AFTER, permanent_errors())
    # before any model loads or any string is paid for: the cache and every split's output can be written, and no
    # other run is filling the same cache (two runs would each save their own copy and lose the other's strings)
    files.check_writable(cache_path.parent, "translation cache folder", "--CACHE")
    for split in splits:
        files.check_writable(dataset.split_dir(split, root), f"{split} folder", "--DATA_DIR")
    print(f"backend: {backend} ({tag})")
    with files.FolderLock(cache_path.parent, f".{cache_path.name}.lock"):
        stats = run(root, splits, make_translator, tag, cache_path, cfg.LOWERCASE, cfg.PROGRESS)
    if stats["failures"]:
        report_failures(stats["failures"], failures_path, log=lambda m: print(m, file=sys.stderr))
        sys.exit(1)
    if failures_path.exists():
        failures_path.unlink()  # an old list would describe a run that has since been completed


if __name__ == "__main__":
    knobs.run_main(main)
