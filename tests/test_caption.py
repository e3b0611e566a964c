"""preprocessing.caption on the embedded sample with the tiny random LLaVA (SMOKE=1): every row captioned, each its own
caption (the banner alone makes a difference), batched == one at a time, resume after a crash without captioning a row
twice, a rerun with other settings never mixing captions, sharding, bad banners and bad input files, caption
cleaning."""
import json

import pytest

from core import dataset, files, knobs
from preprocessing import caption
from tests.helpers import killed_on_call, two_cpu_processes

FAST = ["--MAX_NEW_TOKENS=24", "--PROGRESS=0"]


@pytest.fixture
def data(sample_dir, monkeypatch):
    monkeypatch.setenv("SMOKE", "1")
    return sample_dir


def captions_of(data, name="llava_caption.json"):
    return json.loads((data / "train" / name).read_text(encoding="utf-8"))


def train_banners(data):
    rows, _ = caption.read_rows(data, "train")
    return [r["bannerImage"] for r in rows]


def test_clean_caption():
    asked = 'Given image is advertising about following information: "Car cover". What is happening in the image ?'
    assert caption.clean_caption("  ASSISTANT: The image   shows\n a car.  ") == "The image shows a car."
    assert caption.clean_caption(asked + " A car is parked. ", asked) == "A car is parked."
    assert caption.clean_caption("What is happening in the image ? A red sale banner.") == "A red sale banner."
    assert caption.clean_caption("A banner. USER: and now? ASSISTANT: more") == "A banner."
    assert caption.clean_caption("A car cover on a car. It protects the mirrors from", finished=False) == \
        "A car cover on a car."
    # no whole sentence to keep: the half sentence stays; an answer that ended keeps its last words
    assert caption.clean_caption("A car cover on a", finished=False) == "A car cover on a"
    assert caption.clean_caption("A car. Price 9.99 off", finished=True) == "A car. Price 9.99 off"
    assert caption.clean_caption("A \x0fbanner\ufffd with <|user|> junk") == "A banner with"


def test_questions_use_english_where_translated(data):
    (data / "train" / "info_trans.csv").write_text(
        "id,caption,description,moreInfo,bannerImage\n3,Car cover,Buy now,,3.jpg\n11,,,,11.jpg\n", encoding="utf-8")
    rows = {r["id"]: r for r in caption.read_rows(data, "train")[0]}
    assert rows["3"]["text"] == "en"
    assert caption.question(caption.PROMPT, rows["3"]) == ('Given image is advertising about following information: '
                                                           '"Car coverBuy now". What is happening in the image ?')
    assert rows["11"]["text"] == "vi" and rows["11"]["caption"].startswith("Mẫu thảm")  # empty translation
    assert rows["25"]["text"] == "vi"  # not in info_trans.csv


def test_every_row_greedy_batched_equals_one_at_a_time(data, capsys):
    caption.main(["--DATA_DIR", str(data), "--GREEDY=1", "--BATCH_SIZE=5", *FAST])
    batched = captions_of(data)
    assert sorted(batched) == sorted(train_banners(data)) and all(batched.values())
    assert len(set(batched.values())) == len(batched)  # each row its own caption, not one answer for all
    out = capsys.readouterr().out
    assert "12 with the Vietnamese info.csv text" in out and "exceed 77 tokens" in out
    caption.main(["--DATA_DIR", str(data), "--GREEDY=1", "--BATCH_SIZE=1", "--OUTPUT", str(data / "one.json"), *FAST])
    assert json.loads((data / "one.json").read_text(encoding="utf-8")) == batched


def test_sampling_is_per_row(data):
    """Sampling (the default) draws each row from its own seed: the batch size changes nothing, the seed does."""
    caption.main(["--DATA_DIR", str(data), "--BATCH_SIZE=12", *FAST])
    caption.main(["--DATA_DIR", str(data), "--BATCH_SIZE=1", "--OUTPUT", str(data / "one.json"), *FAST])
    caption.main(["--DATA_DIR", str(data), "--SEED=1", "--OUTPUT", str(data / "seed1.json"), *FAST])
    assert json.loads((data / "one.json").read_text(encoding="utf-8")) == captions_of(data)
    assert json.loads((data / "seed1.json").read_text(encoding="utf-8")) != captions_of(data)


def test_out_of_memory_halves_the_batch_and_changes_no_caption(data, monkeypatch):
    """A GPU cannot exist here: batches of more than 2 images raise torch's out-of-memory error (CUDA's wording)."""
    import torch

    caption.main(["--DATA_DIR", str(data), "--BATCH_SIZE=4", "--OUTPUT", str(data / "roomy.json"), *FAST])
    real, sizes = caption.generate, []

    def tight(cfg, processor, model, batch, device):
        sizes.append(len(batch["rows"]))
        if len(batch["rows"]) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (stand-in)")
        return real(cfg, processor, model, batch, device)

    monkeypatch.setattr(caption, "generate", tight)
    caption.main(["--DATA_DIR", str(data), "--BATCH_SIZE=4", *FAST])
    assert captions_of(data) == json.loads((data / "roomy.json").read_text(encoding="utf-8"))
    assert sizes == [4, 2, 2, 2, 2, 2, 2]  # halved once, then kept for the run


def test_killed_run_resumes_without_redoing_rows(data, monkeypatch):
    real_generate, seen, calls = caption.generate, [], []
    output = data / "train" / "llava_caption.json"

    def crashing(cfg, processor, model, batch, device):
        calls.append(1)
        if len(calls) == 4:  # the "kill": what is on disk now is what a SIGKILL would leave
            on_disk = json.loads(output.read_text(encoding="utf-8")) if output.exists() else {}
            assert len(on_disk) >= len(seen) - cfg.SAVE_EVERY
            raise RuntimeError("killed")
        seen.extend(r["bannerImage"] for r in batch["rows"])
        return real_generate(cfg, processor, model, batch, device)

    monkeypatch.setattr(caption, "generate", crashing)
    with pytest.raises(RuntimeError, match="killed"):
        caption.main(["--DATA_DIR", str(data), "--BATCH_SIZE=2", "--SAVE_EVERY=4", *FAST])
    first = captions_of(data)
    assert sorted(first) == sorted(seen) and len(first) == 6  # the finally-save kept all three batches

    seen.clear()
    monkeypatch.setattr(caption, "generate", lambda cfg, processor, model, batch, device: (
        seen.extend(r["bannerImage"] for r in batch["rows"]) or real_generate(cfg, processor, model, batch, device)))
    caption.main(["--DATA_DIR", str(data), "--BATCH_SIZE=2", *FAST])
    assert not set(seen) & set(first) and len(seen) == 6  # no row captioned twice
    final = captions_of(data)
    assert sorted(final) == sorted(train_banners(data)) and all(final[k] == v for k, v in first.items())

    seen.clear()
    caption.main(["--DATA_DIR", str(data), *FAST])  # a finished run: nothing to do, no model call
    assert seen == []
    # a kill in the middle of a write leaves a temporary file: the next run removes it; outputs share one file mode
    orphan = output.with_name(f".{output.name}.{2 ** 22 + 7}-0a1b2c3d.tmp")  # pid above Linux's limit: never alive
    orphan.write_text("{half")
    caption.main(["--DATA_DIR", str(data), *FAST])
    assert not list(output.parent.glob(".*.tmp"))
    assert {(p.stat().st_mode & 0o777) for p in (output, caption.records_path(output))} == {files.file_mode()}


def test_shards_merge_into_one_json(data):
    cfg = knobs.configure(caption, ["--DATA_DIR", str(data), "--GREEDY=1", *FAST], env={"SMOKE": "1"})
    assert caption.run(cfg, rank=1, world=2) is None  # rank 1 first: it leaves its rank file
    rank1 = json.loads((data / "train" / "llava_caption.rank1.json").read_text(encoding="utf-8"))
    assert sorted(rank1) == sorted(train_banners(data)[1::2])  # its own share, every other row, and no more
    merged = caption.run(cfg, rank=0, world=2)
    assert sorted(merged) == sorted(train_banners(data))
    assert not list((data / "train").glob("llava_caption.rank*"))
    caption.main(["--DATA_DIR", str(data), "--GREEDY=1", "--BATCH_SIZE=12", "--OUTPUT", str(data / "one.json"), *FAST])
    assert json.loads((data / "one.json").read_text(encoding="utf-8")) == merged


def test_unreadable_banner_stops_with_one_line(data):
    (data / "train" / "images" / "42.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(knobs.InputError) as e:
        caption.main(["--DATA_DIR", str(data), "--BATCH_SIZE=4", *FAST])
    assert "42.jpg" in str(e.value) and "id=42" in str(e.value) and "\n" not in str(e.value)
    assert len(captions_of(data)) == 4  # the batch before it is kept

    (data / "train" / "images" / "96.jpg").unlink()
    with pytest.raises(knobs.InputError, match="image not found.*96.jpg"):  # found before the model loads
        caption.main(["--DATA_DIR", str(data), *FAST])


def test_skip_bad_goes_on_lists_and_fails(data, capsys):
    (data / "train" / "images" / "42.jpg").write_bytes(b"not a jpeg")
    (data / "train" / "images" / "96.jpg").unlink()
    with pytest.raises(knobs.InputError) as e:
        caption.main(["--DATA_DIR", str(data), "--BATCH_SIZE=4", "--SKIP_BAD=1", *FAST])
    assert "2 banner(s) not captioned" in str(e.value) and "42.jpg" in str(e.value) and "96.jpg" in str(e.value)
    assert "not captioned: 42.jpg" in capsys.readouterr().out
    assert sorted(captions_of(data)) == sorted(set(train_banners(data)) - {"42.jpg", "96.jpg"})


def test_the_banner_alone_changes_the_caption(data):
    """Every row asked the same question: the captions still differ, so the image reaches the model."""
    info = dataset.read_info(data / "train" / "info.csv")
    files.write_csv(data / "train" / "info_trans.csv", info.assign(caption="A sale banner", description=""))
    caption.main(["--DATA_DIR", str(data), "--GREEDY=1", *FAST])
    captions = captions_of(data)
    assert len(captions) == 12 and len(set(captions.values())) > len(captions) // 2


def test_rerun_with_other_settings_never_mixes_captions(data, monkeypatch):
    """A sampled run killed half-way, then a greedy rerun: refused, naming the knobs that differ, nothing changed;
    with --OVERWRITE=1 every caption is the greedy one (as a fresh greedy run makes them), none left sampled."""
    real = caption.generate
    monkeypatch.setattr(caption, "generate", killed_on_call(real, 3))
    with pytest.raises(KeyboardInterrupt):
        caption.main(["--DATA_DIR", str(data), "--BATCH_SIZE=2", "--SAVE_EVERY=2", *FAST])
    monkeypatch.setattr(caption, "generate", real)
    sampled = captions_of(data)
    assert len(sampled) == 4
    with pytest.raises(knobs.InputError) as refused:
        caption.main(["--DATA_DIR", str(data), "--GREEDY=1", *FAST])
    line = str(refused.value)
    assert "4 captions" in line and "GREEDY False -> True" in line and "--OVERWRITE=1" in line and "\n" not in line
    assert "SEED 0 -> (unused)" in line and "MAX_NEW_TOKENS" not in line  # what differs, and only that
    assert captions_of(data) == sampled
    caption.main(["--DATA_DIR", str(data), "--GREEDY=1", "--OVERWRITE=1", *FAST])
    caption.main(["--DATA_DIR", str(data), "--GREEDY=1", "--OUTPUT", str(data / "fresh.json"), *FAST])
    assert captions_of(data) == json.loads((data / "fresh.json").read_text(encoding="utf-8"))
    assert not set(captions_of(data).values()) & set(sampled.values())
    # the same settings again: nothing to do; a banner changed since: that row is named, as made from other inputs
    monkeypatch.setattr(caption, "load_model", lambda *a: pytest.fail("the model loaded with nothing to do"))
    caption.main(["--DATA_DIR", str(data), "--GREEDY=1", *FAST])
    (data / "train" / "images" / "42.jpg").write_bytes((data / "train" / "images" / "3.jpg").read_bytes())
    with pytest.raises(knobs.InputError, match=r"1 captions \(e.g. 42.jpg\) were made from other inputs"):
        caption.main(["--DATA_DIR", str(data), "--GREEDY=1", *FAST])


@pytest.mark.parametrize("flag", ["--PAD_TO_SQUARE=0", "--MAX_NEW_TOKENS=12", "--SUPPRESS_BLANK_START=0",
                                  "--TEMPERATURE=0.7", "--SEED=1"])
def test_every_setting_that_changes_a_caption_is_in_its_record(data, monkeypatch, flag):
    """Captions made with any other setting that changes them are refused, never kept as done."""
    caption.main(["--DATA_DIR", str(data), *FAST])
    monkeypatch.setattr(caption, "load_model", lambda *a: pytest.fail("the model loaded before the refusal"))
    with pytest.raises(knobs.InputError, match=flag[2:].split("=")[0]):
        caption.main(["--DATA_DIR", str(data), *FAST, flag])


def test_bad_input_files_are_one_line(data, capsys):
    """A header-only info.csv; a captions file whose values are not text (numbers, null, a list): one line naming the
    file (and the rows), exit 2, no traceback."""
    info = data / "train" / "info.csv"
    original = info.read_text(encoding="utf-8")
    info.write_text(original.splitlines()[0] + "\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        knobs.run_main(caption.main, ["--DATA_DIR", str(data), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1] == f"error: {info}: no rows under the header (nothing to work on)"
    assert not (data / "train" / "llava_caption.json").exists()
    info.write_text(original, encoding="utf-8")
    output = data / "train" / "llava_caption.json"
    output.write_text(json.dumps({"3.jpg": 5, "11.jpg": None, "25.jpg": ["a"], "31.jpg": "fine"}), encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        knobs.run_main(caption.main, ["--DATA_DIR", str(data), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1].startswith(f"error: {output}: ") and "3 row(s) hold no text" in err[-1]
    assert "3.jpg (5)" in err[-1] and "11.jpg (null)" in err[-1] and '25.jpg (["a"])' in err[-1]


@pytest.mark.slow
def test_two_processes_under_accelerate_caption_as_one(data, tmp_path):
    """`accelerate launch` with two real CPU processes (gloo; `--multi_gpu` with no GPU visible: accelerate 1.15 starts
    one process for `--cpu --num_processes=2`): each captions every other row into its rank file, rank 0 merges them,
    and the JSON equals one process's, sampled captions included (each row samples from its own seed). One CPU thread
    in both, as the launcher gives each process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "SMOKE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(repo)}
    flags = [f"--DATA_DIR={data}", "--BATCH_SIZE=1", *FAST]
    for launcher, name in (([sys.executable], "one"), (two_cpu_processes(), "two")):  # one process, then two
        done = subprocess.run([*launcher, "-m", "preprocessing.caption", *flags, f"--OUTPUT={tmp_path / name}.json"],
                              cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout + done.stderr
    assert "rank 0/2: 12 rows" in said and "rank 1/2: 12 rows" in said  # two processes, each its share
    merged = json.loads((tmp_path / "two.json").read_text(encoding="utf-8"))
    assert merged == json.loads((tmp_path / "one.json").read_text(encoding="utf-8"))
    assert sorted(merged) == sorted(train_banners(data)) and len(set(merged.values())) > 1
    assert not list(tmp_path.glob("two.rank*"))  # the rank files were merged away


def test_llava_is_asked_in_the_seeds_conversation_format():
    """The seed asked through LLaVA's llava_v1 conversation: its system text, then `USER: <image>\\n<question>
    ASSISTANT:`. The stand-in processor carries llava-hf's own chat template (model_facts), which writes a system
    message as its bare text; without a template the fallback format gets the same string."""
    from transformers import AutoProcessor

    import smoke

    processor = AutoProcessor.from_pretrained(smoke.smoke_model("llava"))
    expected = f"{caption.SYSTEM} USER: <image>\nWhat is it? ASSISTANT:"
    assert caption.chat_prompt(processor, "What is it?", caption.CHAT_FORMAT, caption.SYSTEM) == expected
    processor.chat_template = None
    assert caption.chat_prompt(processor, "What is it?", caption.CHAT_FORMAT, caption.SYSTEM) == expected
    assert caption.chat_prompt(processor, "What is it?", caption.CHAT_FORMAT) == "USER: <image>\nWhat is it? ASSISTANT:"
