"""Translation stage: every row kept, each distinct string translated once, cached, resumable, failure policy.

The seq2seq tests run the real code path on the tiny random smoke model (its English is noise; what is checked is the
plumbing). The google tests replace the online service with a stand-in callable, or point deep-translator at a
stand-in HTTP server on 127.0.0.1 (one that refuses connections, one that answers 503): the real service cannot be
reached from here. Backoff sleeps go to a recorder, so nothing waits. Knobs are flags; the environment only sets
DATA_DIR and SMOKE.
"""
import csv
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path

import pandas as pd
import pytest

from core import dataset, files, knobs
import smoke
from deep_translator.exceptions import NotValidLength, RequestError, TooManyRequests
from preprocessing import translate as tr

REPO = Path(__file__).resolve().parents[1]

# rows appended to the sample's test split: the awkward cases real ad copy has
EXTRA_TEST_ROWS = [
    ("90", 'Giày "chính hãng", giá 1,290,000đ, bảo hành 12 tháng', "Mua ngay, kẻo lỡ!", "", "90.jpg"),
    ("91", "", "Chỉ mô tả, không có tiêu đề 🎁🔥", "Thời trang nữ", "91.jpg"),
    ("92", "Ưu đãi   cuối\ttuần\n, giảm 50%", "", "", "92.jpg"),
    ("94", ("Căn hộ view biển, sổ hồng lâu dài, " * 10).strip() + " 🏖️", "Chiết khấu 8%", "Bất động sản", "94.jpg"),
    # the sample's disclaimer in decomposed Unicode (NFD): must share one translation with the composed one
    ("93", "Trà xanh matcha nguyên chất", "Giảm 10%", unicodedata.normalize(
        "NFD", "Sản phẩm không phải là thuốc, không có tác dụng thay thế thuốc chữa bệnh"), "93.jpg"),
]


def add_rows(data_dir, split, rows):
    with open(data_dir / split / "info.csv", "a", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)


@pytest.fixture(scope="module")
def smoke_seq2seq():
    """One loaded smoke translator for the module (loading is most of the cost); tests reset its counters.
    One torch thread: on the busy 2-core test machine two threads ran the tiny model 40x slower."""
    import torch

    threads = torch.get_num_threads()
    yield tr.Seq2SeqTranslator(smoke.smoke_model("seq2seq"), device="cpu", batch_size=4, max_new_tokens=8,
                               num_beams=1, src_lang="vi_VN", tgt_lang="en_XX", cpu_threads=1, smoke=False)
    torch.set_num_threads(threads)


@pytest.fixture
def translator(smoke_seq2seq):
    smoke_seq2seq.calls = smoke_seq2seq.truncated = smoke_seq2seq.cut_short = 0
    smoke_seq2seq.batch_size = smoke_seq2seq.batches.size = 4
    return smoke_seq2seq


TAG = "seq2seq|smoke-test"


def run_seq2seq(data_dir, make_translator, **kw):
    return tr.run(data_dir, ["train", "test"], make_translator, TAG, data_dir / "translation_cache.json",
                  progress=False, log=lambda m: None, **kw)


def never_load():
    raise AssertionError("the model was loaded although every string is cached")


def test_all_rows_kept_in_order_for_both_splits(sample_dir, translator):
    add_rows(sample_dir, "test", EXTRA_TEST_ROWS)
    stats = run_seq2seq(sample_dir, lambda: translator)
    assert stats["failures"] == [] and len(stats["written"]) == 2
    store = files.read_json(sample_dir / "translation_cache.json")
    for split in ("train", "test"):
        src = dataset.read_info(sample_dir / split / "info.csv")
        out = pd.read_csv(sample_dir / split / "info_trans.csv", dtype=str, keep_default_na=False)
        assert list(out.columns) == list(src.columns)
        assert out["id"].tolist() == src["id"].tolist()
        assert out["bannerImage"].tolist() == src["bannerImage"].tolist()
        for column in dataset.TEXT_COLUMNS:
            for vi, en in zip(src[column], out[column]):
                if vi:
                    assert en and en == store[tr.cache_key(TAG, tr.prepare(vi))]
                else:
                    assert en == ""  # empty stays empty, never sent to the model
    test = dataset.read_info(sample_dir / "test" / "info.csv")
    assert len(test) == 11 and max(map(len, test["caption"])) >= 300  # a 300+ character caption with emoji went through
    # each distinct normalised string once: the disclaimer (in both splits, once in NFD) and repeated tags
    fields = sum(bool(v) for s in ("train", "test") for c in dataset.TEXT_COLUMNS
                 for v in dataset.read_info(sample_dir / s / "info.csv")[c])
    assert stats["fields"] == fields and stats["distinct"] < fields
    assert len(store) == stats["distinct"] == stats["translated"]
    assert translator.calls == -(-stats["distinct"] // 4)  # batches of 4, nothing translated twice


def test_rerun_makes_no_model_calls(sample_dir, translator):
    first = run_seq2seq(sample_dir, lambda: translator)
    before = {s: (sample_dir / s / "info_trans.csv").read_bytes() for s in ("train", "test")}
    second = run_seq2seq(sample_dir, never_load)
    assert second["model_calls"] == 0 and second["translated"] == 0
    assert second["cached"] == first["distinct"]
    assert {s: (sample_dir / s / "info_trans.csv").read_bytes() for s in ("train", "test")} == before


def test_a_translation_of_another_info_csv_is_refused_by_the_stages_that_read_it(sample_dir, translator):
    """A changed banner name or an edited caption in info.csv after translating: the methods and the prompt stage
    refuse the stale info_trans.csv in one line (they would write banners under old names, or from old English);
    rerunning the translation makes it current again."""
    from core.knobs import InputError
    from inference import method1, runner
    from prompt_engineer import generate_prompts

    run_seq2seq(sample_dir, lambda: translator)
    info_path = sample_dir / "test" / "info.csv"
    cfg = knobs.configure(method1, [f"--DATA_DIR={sample_dir}"], env={})
    prompts_cfg = knobs.configure(generate_prompts, [f"--DATA_DIR={sample_dir}"], env={})
    assert len(runner.read_test_rows(cfg)) == 6 and len(generate_prompts.read_split(prompts_cfg, "test")) == 6
    info = dataset.read_info(info_path)
    for change, says in (("bannerImage", "its rows differ from info.csv"), ("caption", "translated from another")):
        edited = info.copy()
        edited.loc[0, change] = "renamed.jpg" if change == "bannerImage" else edited.loc[0, change] + " mới"
        files.write_csv(info_path, edited)
        with pytest.raises(InputError, match=says):
            runner.read_test_rows(cfg)
        with pytest.raises(InputError, match=says):
            generate_prompts.read_split(prompts_cfg, "test")
    run_seq2seq(sample_dir, lambda: translator)  # translated again: current
    assert len(runner.read_test_rows(cfg)) == 6


def test_cache_is_keyed_on_every_setting_that_changes_a_translation(sample_dir, translator):
    cfg = knobs.configure(tr, [], env={})
    tag = tr.seq2seq_tag(cfg, "some/model", "float32")
    changed = dict(NUM_BEAMS=1, MAX_NEW_TOKENS=8, MAX_INPUT_TOKENS=64, SUPPRESS_BLANK_START=False, SRC_LANG="vie_Latn",
                   TGT_LANG="eng_Latn", TGT_LANG_AS="forced_bos")
    tags = {tr.seq2seq_tag(cfg.replace(**{k: v}), "some/model", "float32") for k, v in changed.items()}
    tags |= {tr.seq2seq_tag(cfg, "other/model", "float32"), tr.seq2seq_tag(cfg, "some/model", "float16")}
    assert len(tags) == len(changed) + 2 and tag not in tags
    same = cfg.replace(BATCH_SIZE=1, DEVICE="cpu", CPU_THREADS=1, PROGRESS=False)  # speed only, same text
    assert tr.seq2seq_tag(same, "some/model", "float32") == tag
    # a run with other settings reuses nothing the cache holds, and says so
    first = run_seq2seq(sample_dir, lambda: translator)
    logs = []
    other = tr.run(sample_dir, ["train", "test"], lambda: translator, TAG + "|beams=2",
                   sample_dir / "translation_cache.json", progress=False, log=logs.append)
    assert other["cached"] == 0 and other["translated"] == first["distinct"]
    assert any(f"holds {first['distinct']} translations made with other settings" in m for m in logs)


class StopAfter:
    """Wraps the real translator and raises after `n` batches, as a crash or a kill mid-run would."""

    def __init__(self, inner, n):
        self.inner, self.n, self.name, self.batch_size = inner, n, inner.name, inner.batch_size

    def translate_batch(self, texts):
        if self.n == 0:
            raise KeyboardInterrupt
        self.n -= 1
        return self.inner.translate_batch(texts)


def test_interrupted_run_resumes_and_translates_only_the_rest(sample_dir, translator):
    with pytest.raises(KeyboardInterrupt):
        run_seq2seq(sample_dir, lambda: StopAfter(translator, 3))
    assert not (sample_dir / "train" / "info_trans.csv").exists()
    assert not (sample_dir / "test" / "info_trans.csv").exists()
    assert len(files.read_json(sample_dir / "translation_cache.json")) == 12  # 3 batches of 4, saved as they went
    translator.calls = 0
    stats = run_seq2seq(sample_dir, lambda: translator)
    assert stats["cached"] == 12 and stats["translated"] == stats["distinct"] - 12
    assert translator.calls == -(-(stats["distinct"] - 12) // 4)
    assert stats["failures"] == [] and len(stats["written"]) == 2


@pytest.mark.slow
def test_killed_process_resumes(sample_dir):
    """A real kill: the CLI is SIGKILLed once its cache holds some entries; the rerun does only the rest."""
    env = dict(os.environ, SMOKE="1", DATA_DIR=str(sample_dir))
    cmd = [sys.executable, "-m", "preprocessing.translate", "--BATCH_SIZE=1", "--PROGRESS=0", "--CPU_THREADS=1"]
    cache = sample_dir / "translation_cache.json"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while proc.poll() is None and len(files.read_json(cache, {})) < 3:
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    done_before = len(files.read_json(cache, {}))
    assert proc.returncode != 0 and done_before >= 3  # killed mid-way, with some work saved
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    distinct = int(re.search(r"(\d+) distinct strings, ", out.split("all splits:")[1]).group(1))
    assert f"{done_before} already in the cache" in out and done_before < distinct
    assert f"translated {distinct - done_before} strings" in out
    assert (sample_dir / "test" / "info_trans.csv").exists()


class BlankFor:
    """The real translator, except that one string comes back empty (as a weak model sometimes answers)."""

    def __init__(self, inner, bad):
        self.inner, self.bad, self.name, self.batch_size = inner, bad, inner.name, inner.batch_size

    def translate_batch(self, texts):
        out = self.inner.translate_batch(texts)
        return [ValueError("empty translation") if t == self.bad else o for t, o in zip(texts, out)]


def test_empty_translation_is_a_failure_and_blocks_only_its_split(sample_dir, translator):
    bad = tr.prepare(dataset.read_info(sample_dir / "test" / "info.csv")["caption"][0])
    stats = run_seq2seq(sample_dir, lambda: BlankFor(translator, bad))
    assert [(f["split"], f["id"], f["field"]) for f in stats["failures"]] == [("test", "1", "caption")]
    assert not (sample_dir / "test" / "info_trans.csv").exists()  # never a partial file
    assert (sample_dir / "train" / "info_trans.csv").exists()  # train is complete on its own
    store = files.read_json(sample_dir / "translation_cache.json")
    assert tr.cache_key(TAG, bad) not in store and len(store) == stats["distinct"] - 1
    translator.calls = 0
    again = run_seq2seq(sample_dir, lambda: translator)
    assert again["translated"] == 1 and translator.calls == 1 and again["failures"] == []


def test_normalisation_and_lowercase_flag(sample_dir, translator):
    add_rows(sample_dir, "test", [("95", "  Kem  DƯỠNG\u00a0da ", "", "", "95.jpg"),
                                  ("96", unicodedata.normalize("NFD", "Kem DƯỠNG da"), "", "", "96.jpg")])
    stats = run_seq2seq(sample_dir, lambda: translator, lowercase=True)
    store = files.read_json(sample_dir / "translation_cache.json")
    assert tr.cache_key(TAG, "kem dưỡng da") in store  # one entry for both spellings, lower-cased on request
    assert not any(k.split("\t", 1)[1] != k.split("\t", 1)[1].lower() for k in store)
    assert stats["failures"] == []


def test_seq2seq_language_codes_and_blank_guard(translator):
    # the smoke tokenizer has no vi_VN / en_XX tokens: they are skipped, not turned into <unk>
    assert "decoder_start_token_id" not in translator.generate_kwargs and translator.notes == []
    assert translator.generate_kwargs["min_new_tokens"] == 1
    blank = translator.generate_kwargs["begin_suppress_tokens"]
    assert translator.tokenizer.pad_token_id in blank
    assert all(not translator.tokenizer.decode([i], skip_special_tokens=True).strip() for i in blank)
    long_text = "Đất nền ven biển, " * 200  # far over the 256-token limit of the smoke model: truncated, not a crash
    (out,) = translator.translate_batch([long_text])
    assert isinstance(out, str) and out and translator.truncated == 1


def test_a_translation_cut_by_max_new_tokens_is_counted(translator, monkeypatch):
    """A translation that reaches MAX_NEW_TOKENS before its end-of-sequence token is counted (the run warns with the
    count); one that ends is not."""
    texts = ["Giảm giá 50%", "Mua một tặng một"]
    monkeypatch.setitem(translator.generate_kwargs, "max_new_tokens", 1)  # min_new_tokens=1: the one token is no end
    translator.translate_batch(texts)
    assert translator.cut_short == 2
    translator.cut_short = 0
    monkeypatch.setitem(translator.generate_kwargs, "max_new_tokens", 3)
    monkeypatch.setitem(translator.generate_kwargs, "forced_eos_token_id",  # the last token is the end: complete
                        translator.model.generation_config.eos_token_id)
    translator.translate_batch(texts)
    assert translator.cut_short == 0


def test_seq2seq_out_of_memory_halves_the_batch(translator, monkeypatch):
    """A GPU cannot exist here: the out-of-memory error (torch's, with CUDA's wording) is raised by a stand-in for
    batches larger than 2, and for one string that is too long even alone."""
    real, sizes = translator._generate, []
    texts = [f"Giảm giá {i}%" for i in range(5)]
    expected = [real([t])[0] for t in texts]

    def generate(texts):
        sizes.append(len(texts))
        if len(texts) > 2 or "99" in texts[0]:
            raise translator.torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (stand-in)")
        return real(texts)

    monkeypatch.setattr(translator, "_generate", generate)
    assert translator.translate_batch(texts) == expected  # same translations, whatever the batches
    assert sizes == [4, 2, 2, 1] and translator.batches.size == 2  # 4 fails, then halves; the smaller size stays
    out = translator.translate_batch(["Giảm giá 99%", "Mua ngay"])
    assert isinstance(out[0], translator.torch.OutOfMemoryError) and out[1] == real(["Mua ngay"])[0]


def test_backend_auto_rule():
    assert tr.resolve_backend("auto", False, {"HF_HUB_OFFLINE": "1"}) == "seq2seq"
    assert tr.resolve_backend("auto", True, {}) == "seq2seq"  # the run's cfg.SMOKE
    assert tr.resolve_backend("auto", False, {}) == "google"
    assert tr.resolve_backend("auto", False, {"SMOKE": "1"}) == "google"  # the environment's SMOKE is not read here
    assert tr.resolve_backend("google", True, {"HF_HUB_OFFLINE": "1"}) == "google"
    assert tr.resolve_backend("auto", False, {"HF_HUB_OFFLINE": "0"}) == "google"
    with pytest.raises(knobs.InputError):
        tr.resolve_backend("deepl", False, {})


# ----------------------------------------------------------------------------------------------------------------------
# google backend: a stand-in replaces the online service (the real one cannot be reached from here)


class FakeClock:
    """time.monotonic and time.sleep for the policy: sleeping advances the clock, and each wait is recorded."""

    def __init__(self):
        self.now, self.sleeps = 100.0, []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


class StandInService:
    """Answers like Google Translate would, with scripted failures: `script[text]` is a list of exceptions (or None /
    "" answers) returned first, in order; `always_fail` texts raise every time."""

    def __init__(self, script=None, always_fail=(), clock=None, cost=0.0):
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.always_fail, self.calls, self.clock, self.cost, self.call_times = set(always_fail), [], clock, cost, []

    def __call__(self, text):
        self.calls.append(text)
        if self.clock:
            self.call_times.append(self.clock.now)
            self.clock.now += self.cost  # the request itself takes time
        if text in self.always_fail:
            raise RequestError()
        if self.script.get(text):
            step = self.script[text].pop(0)
            if isinstance(step, BaseException):
                raise step
            return step
        return f"EN[{text}]"


def policy(service, clock, **kw):
    kw = dict(dict(retries=3, backoff=1.0, backoff_max=3.0, min_interval=0.0, give_up_after=5,
                   permanent=tr.permanent_errors()), **kw)
    return tr.RetryingTranslator(service, sleep=clock.sleep, clock=clock.clock, **kw)


def test_google_retries_with_exponential_backoff_then_succeeds():
    clock = FakeClock()
    service = StandInService({"a": [TooManyRequests(), ConnectionError("reset"), None, ""]})
    translator = policy(service, clock, retries=5, backoff_max=100.0)
    assert translator.translate_batch(["a"]) == ["EN[a]"]
    assert service.calls == ["a"] * 5 and clock.sleeps == [1.0, 2.0, 4.0, 8.0]  # 429, network error, None, ""


def test_google_string_that_always_fails_is_listed_and_backoff_is_capped():
    clock = FakeClock()
    service = StandInService(always_fail={"bad"})
    out = policy(service, clock).translate_batch(["ok1", "bad", "ok2"])
    assert out[0] == "EN[ok1]" and out[2] == "EN[ok2]" and isinstance(out[1], RequestError)
    assert service.calls.count("bad") == 4  # 1 + 3 retries
    assert clock.sleeps == [1.0, 2.0, 3.0]  # capped at backoff_max


def test_google_permanent_error_is_not_retried():
    clock = FakeClock()
    service = StandInService({"x" * 6000: [NotValidLength("x" * 6000, 0, 5000)]})
    (out,) = policy(service, clock).translate_batch(["x" * 6000])
    assert isinstance(out, NotValidLength) and len(service.calls) == 1 and clock.sleeps == []


def test_google_permanent_errors_do_not_mean_the_service_is_down():
    clock = FakeClock()
    long = [f"{i}" + "x" * 6000 for i in range(5)]  # longest first, as the stage sends them
    service = StandInService({t: [NotValidLength(t, 0, 5000)] for t in long})
    out = policy(service, clock, give_up_after=3).translate_batch(long + ["ok"])
    assert all(isinstance(o, NotValidLength) for o in out[:5]) and out[5] == "EN[ok]"


def test_google_request_rate_is_bounded():
    clock = FakeClock()
    service = StandInService(clock=clock, cost=0.1)
    policy(service, clock, min_interval=0.5).translate_batch([f"s{i}" for i in range(5)])
    gaps = [b - a for a, b in zip(service.call_times, service.call_times[1:])]
    assert len(gaps) == 4 and all(g >= 0.5 - 1e-9 for g in gaps)
    assert clock.sleeps == [0.4] * 4  # the request's own 0.1 s counts toward the interval


def test_google_gives_up_when_the_service_is_down():
    clock = FakeClock()
    texts = [f"s{i}" for i in range(20)]
    service = StandInService(always_fail=set(texts))
    with pytest.raises(tr.ServiceDown):
        policy(service, clock, give_up_after=3).translate_batch(texts)
    assert len(service.calls) == 3 * 4  # three strings x (1 + 3 retries), then it stops asking


def test_google_timeout_counts_as_a_failed_attempt():
    import threading

    release = threading.Event()
    with pytest.raises(TimeoutError):
        tr.call_with_timeout(lambda text: release.wait(5), "x", 0.05)
    release.set()
    assert tr.call_with_timeout(str.upper, "ok", 5) == "OK"
    with pytest.raises(ValueError):
        tr.call_with_timeout(int, "not a number", 5)


def closed_port():
    """A port on 127.0.0.1 with nothing listening: a connection there is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Answer503(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_unreachable_service_stops_at_the_first_string_naming_the_offline_backend():
    """No network: deep-translator's real request goes to a closed port on 127.0.0.1 (refused) or to a name that
    cannot resolve; one line within seconds, no retries, naming --BACKEND=seq2seq."""
    for url, reason in ((f"http://127.0.0.1:{closed_port()}/m", "connection refused"),
                        ("http://translate.invalid/m", "does not resolve")):
        clock = FakeClock()
        translator = policy(tr.google_translate_fn("vi", "en", timeout=5, url=url), clock, retries=5)
        started = time.monotonic()
        with pytest.raises(knobs.InputError) as err:
            translator.translate_batch(["Giảm giá 50%", "Mua 1 tặng 1"])
        assert time.monotonic() - started < 5 and clock.sleeps == [] and translator.calls == 1
        message = str(err.value)
        assert reason in message and "--BACKEND=seq2seq" in message and "\n" not in message


def test_server_errors_keep_their_retries():
    """A stand-in server answering 503 (overloaded): each attempt is retried with backoff, never taken for offline."""
    server = http.server.HTTPServer(("127.0.0.1", 0), Answer503)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        clock = FakeClock()
        url = f"http://127.0.0.1:{server.server_port}/m"
        (out,) = policy(tr.google_translate_fn("vi", "en", timeout=5, url=url), clock, retries=2).translate_batch(["a"])
    finally:
        server.shutdown()
        server.server_close()
    assert isinstance(out, RequestError) and clock.sleeps == [1.0, 2.0]


def test_google_backend_end_to_end_with_a_failing_string(sample_dir):
    """The whole run on the google policy: the failed field is listed by (split, row id, field), its split's
    info_trans.csv is not written, the cache keeps every success, and the next run asks only for the failed string."""
    clock = FakeClock()
    test = dataset.read_info(sample_dir / "test" / "info.csv")
    bad = tr.prepare(test["description"][2])  # row id 4
    service = StandInService(always_fail={bad})
    tag = tr.google_tag("vi", "en")
    cache = sample_dir / "translation_cache.json"
    make = lambda: policy(service, clock)  # noqa: E731
    stats = tr.run(sample_dir, ["train", "test"], make, tag, cache, progress=False, log=lambda m: None)
    assert [(f["split"], f["id"], f["field"]) for f in stats["failures"]] == [("test", "4", "description")]
    assert not (sample_dir / "test" / "info_trans.csv").exists()
    assert len(files.read_json(cache)) == stats["distinct"] - 1
    healthy = StandInService()
    again = tr.run(sample_dir, ["train", "test"], lambda: policy(healthy, clock), tag, cache, progress=False,
                   log=lambda m: None)
    assert healthy.calls == [bad] and again["failures"] == []
    out = pd.read_csv(sample_dir / "test" / "info_trans.csv", dtype=str, keep_default_na=False)
    assert out["description"][2] == f"EN[{bad}]" and out["moreInfo"][2] == ""
    assert out["caption"][1] == f"EN[{tr.prepare(test['caption'][1])}]"


# ----------------------------------------------------------------------------------------------------------------------
# the command line


def run_script(data_dir, *args, **env):
    env = dict(os.environ, DATA_DIR=str(data_dir), PYTHON=sys.executable, **env)
    return subprocess.run(["bash", str(REPO / "run" / "translation.sh"), "--CPU_THREADS=1", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_translation_sh_smoke_end_to_end(sample_dir):
    first = run_script(sample_dir, SMOKE="1")
    assert first.returncode == 0, first.stderr
    assert "SMOKE=1" in first.stderr and "model calls: 0" not in first.stdout
    # captured without a terminal: no progress bars or escape codes, no unexplained notes
    log = first.stdout + first.stderr
    assert "\x1b[" not in log and "\r" not in log and "Loading weights" not in log and "no language codes" not in log
    for split in ("train", "test"):
        src = dataset.read_info(sample_dir / split / "info.csv")
        out = pd.read_csv(sample_dir / split / "info_trans.csv", dtype=str, keep_default_na=False)
        assert out["id"].tolist() == src["id"].tolist() and len(out) == len(src)
        assert ((out["moreInfo"] == "") == (src["moreInfo"] == "")).all()
    second = run_script(sample_dir, SMOKE="1")
    assert second.returncode == 0 and "model calls: 0" in second.stdout and "loading" not in second.stderr
    assert not (sample_dir / "translation_failures.json").exists()


def test_translation_sh_errors_name_the_problem(sample_dir, tmp_path):
    missing = run_script(tmp_path / "nowhere", SMOKE="1")
    assert missing.returncode == 2 and "info.csv: file not found" in missing.stderr
    bad = run_script(sample_dir, "--BACKEND=deepl")
    assert bad.returncode == 2 and "BACKEND must be" in bad.stderr
    helped = run_script(sample_dir, "--help")
    assert helped.returncode == 0 and "GOOGLE_MIN_INTERVAL" in helped.stdout


def test_failure_list_is_written_for_the_cli(sample_dir, monkeypatch, capsys):
    """main() on the google backend while the service (a stand-in: the real one is unreachable) is down: the first
    few failed fields, their count and the file with the full list, in one line."""
    service_down = StandInService()
    service_down.always_fail = type("Everything", (), {"__contains__": lambda self, text: True})()
    monkeypatch.setenv("DATA_DIR", str(sample_dir))
    monkeypatch.setattr(tr, "google_translate_fn", lambda *args: service_down)
    with pytest.raises(SystemExit) as exit_info:
        tr.main(["--BACKEND=google", "--PROGRESS=0", "--GOOGLE_BACKOFF=0", "--GOOGLE_MIN_INTERVAL=0"])  # no waiting
    assert exit_info.value.code == 1
    failures = json.loads((sample_dir / "translation_failures.json").read_text(encoding="utf-8"))
    assert {(f["split"], f["field"]) for f in failures} >= {("train", "caption"), ("test", "moreInfo")}
    defaults = knobs.configure(tr, [], env={})
    assert len(service_down.calls) == defaults.GOOGLE_GIVE_UP_AFTER * (defaults.GOOGLE_RETRIES + 1)
    assert not (sample_dir / "train" / "info_trans.csv").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not be translated" in err[0]
    assert f"({len(failures)} in all; full list: {sample_dir / 'translation_failures.json'})" in err[0]


def test_unreachable_service_through_main(sample_dir, monkeypatch):
    """The whole stage, as a user without network runs it: exit 2 via run_main with one line, within seconds."""
    real = tr.google_translate_fn
    url = f"http://127.0.0.1:{closed_port()}/m"
    monkeypatch.setattr(tr, "google_translate_fn", lambda *args: real(*args, url=url))
    monkeypatch.setenv("DATA_DIR", str(sample_dir))
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        knobs.run_main(tr.main, ["--BACKEND=google", "--PROGRESS=0"])
    assert exit_info.value.code == 2 and time.monotonic() - started < 10


@pytest.mark.parametrize("tgt_lang_as", ["decoder_start", "forced_bos"])
def test_language_codes_are_applied_when_the_tokenizer_has_them(tmp_path, tgt_lang_as):
    """vinai-translate (decoder_start=en_XX) and NLLB/mBART-50 (forced_bos) settings, on the smoke model given two
    language tokens (the real models cannot be downloaded here)."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    folder = str(tmp_path / "with_lang_codes")
    tok = AutoTokenizer.from_pretrained(smoke.smoke_model("seq2seq"))
    tok.add_special_tokens({"additional_special_tokens": ["vi_VN", "en_XX"]})
    model = AutoModelForSeq2SeqLM.from_pretrained(smoke.smoke_model("seq2seq"))
    model.resize_token_embeddings(len(tok))
    tok.save_pretrained(folder)
    model.save_pretrained(folder)
    t = tr.Seq2SeqTranslator(folder, device="cpu", max_new_tokens=6, num_beams=2, src_lang="vi_VN", tgt_lang="en_XX",
                             tgt_lang_as=tgt_lang_as, cpu_threads=1, smoke=False)
    en = tok.convert_tokens_to_ids("en_XX")
    key = "decoder_start_token_id" if tgt_lang_as == "decoder_start" else "forced_bos_token_id"
    assert t.generate_kwargs[key] == en and t.notes == [f"{tgt_lang_as}=en_XX"]
    # forced_bos: en_XX is the first generated token, so it must not be suppressed there; decoder_start: it is the
    # given start token, and generating it again would be noise
    assert (en in t.generate_kwargs["begin_suppress_tokens"]) == (tgt_lang_as == "decoder_start")
    out = t.translate_batch(["Giảm giá 50%", "Mua 1 tặng 1, miễn phí giao hàng toàn quốc"])
    assert all(isinstance(o, str) and o and "en_XX" not in o for o in out)
