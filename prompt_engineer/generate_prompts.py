"""
Image prompts for Method 2: an LLM writes an explicit English image description for every test row, few-shot.

reads   $DATA_DIR/test/info_trans.csv and $DATA_DIR/train/info_trans.csv (INFO_FILE: the English copy),
        $DATA_DIR/train/llava_caption.json ({train bannerImage: VLM caption}, run/caption.sh)
writes  $DATA_DIR/test/llava_prompt.json ({test bannerImage: prompt}): the LLM's prompts, and only those; replaced
        atomically after every batch;
        $DATA_DIR/test/llava_prompt_report.json, what made each row's prompt and the one record of the rows that fell
        back: {"settings": {id: the settings that change a prompt}, "items": {bannerImage: {settings: id, inputs: hash
        of the row's copy, source: llm|fallback, tries, problems (, written: false for a fallback)}}}
        the retrieval indexes of the copy under $DATA_DIR/{train,test}/index/ (reused on a rerun)

Each test row's prompt shows its K nearest training rows (sentence encoder over the English caption+description,
through the retrieval stage's cached index and exact search), each as `Advertisement: <copy>` + its VLM caption, then
the test row (prompt_engineer/few_shot.py). The LLM's first line is kept. One left-padded generate call per batch;
each row samples from its own seed (core.seeds.row_seed(SEED, id)), so its prompt does not depend on the batch size or
on which rows share its batch (prompt_engineer/llm.py). A generation that is empty, garbled, repetitive, a copy of an
example or not English (CHECKS, prompt_engineer/checks.py) is generated again with another seed, up to MAX_TRIES in all;
a row still bad FALLS BACK, counted: it gets no prompt in the JSON (its report record says why), and Method 2 prompts
it with its own fitted English copy, as it does any row without an LLM prompt.
A rerun skips rows made with the same settings and inputs (RETRY_FALLBACKS=1: also redo the fallbacks); a row made
otherwise (another K, MODEL, SEED..., a changed copy, other training captions or copy for the examples) is refused in
one line naming what differs, and OVERWRITE=1 redoes it: one output never mixes prompts of two settings.

usage: bash run/prompts.sh [--MODEL=Qwen/Qwen2.5-7B-Instruct] [--BATCH_SIZE=32] [--K=2] [--help]
"""
import collections
import sys
import time

import models
from core import batching, dataset, devices, files, knobs, seeds
from core.knobs import InputError
from core.progress import progress as progress_bar
from core import prompt_fit as prompts
from prompt_engineer import checks, few_shot

DATA_DIR = "data"  # the data folder (also from env DATA_DIR: the run/*.sh contract)
MODEL = models.LLM  # causal LM: hub id[@revision] or local folder (Vietnamese copy: SeaLLMs/SeaLLMs-v3-7B-Chat)
GGUF_FILE = ""  # a .gguf file inside MODEL's folder to load through transformers (needs the gguf package)
BACKEND = "transformers"  # transformers | vllm (only when vllm is installed)
ENCODER = models.FEW_SHOT_ENCODER  # sentence-transformers model ranking the examples (the seed's)
K = 2  # few-shot examples per test row (0 = zero-shot)
INFO_FILE = "info_trans.csv"  # copy of both splits (info.csv: the Vietnamese original; then drop "english" from CHECKS)
COPY_FIELDS = "caption,description"  # columns joined into a row's copy (shown and searched)
CAPTION_FILE = "llava_caption.json"  # in $DATA_DIR/train: {bannerImage: caption} from run/caption.sh
NO_CAPTIONS = "error"  # when CAPTION_FILE is missing: error | zero_shot (prompt without examples, said loudly)
OUT_FILE = "llava_prompt.json"  # in $DATA_DIR/test: {bannerImage: prompt}
INSTRUCTION = ("Write a one-sentence, explicit description of the photo of the last advertisement, in English, in "
               "the style of the examples.")  # first paragraph of the few-shot text ("" = none)
EXAMPLE_TEMPLATE = "Advertisement: {copy}\nAdvertisement photo description: {caption}"  # an example: {copy} {caption}
QUERY_TEMPLATE = "Advertisement: {copy}\nAdvertisement photo description:"  # the test row, last ({copy})
CHAT = "auto"  # auto (the chat template when the tokenizer has one) | on | off (plain text completion)
COPY_MAX_TOKENS = 96  # a copy longer than this is cut at a sentence end
CAPTION_MAX_TOKENS = 96  # an example's caption longer than this is cut at a sentence end
MAX_PROMPT_TOKENS = 1024  # whole prompt; over it the farthest examples are dropped (also capped by the model's window)
DO_SAMPLE = True  # sample (the seed's way); False = greedy for the first try (retries always sample)
TEMPERATURE = 0.9  # sampling temperature (the seed's)
TOP_P = 0.95  # nucleus sampling (the seed's)
TOP_K = 150  # top-k sampling (the seed's; 0 = off)
REPETITION_PENALTY = 1.2  # over the prompt and the generated tokens (the seed's)
REPETITION_WINDOW = 64  # ... in the last this many tokens (the seed's ctransformers last_n_tokens); 0 = all of them
MAX_NEW_TOKENS = 77  # generated tokens at most (the seed's)
STOP_AT_FIRST_LINE = True  # a row stops at the end of its first non-blank line (only that line is kept)
BATCH_SIZE = 32  # rows per generate call (halved automatically on out-of-memory, core/batching.py)
SEED = 42  # run seed: row r's try t samples from row_seed(SEED, f"{id}#{t}")
MAX_TRIES = 3  # generations per row at most, the first included; then the fitted copy
CHECKS = ("empty", "garbled", "repeat", "copy", "english")  # what makes a generation bad (empty always does)
RETRY_FALLBACKS = False  # a rerun also regenerates the rows that fell back
OVERWRITE = False  # redo prompts made with other settings or inputs (else the run refuses them, naming what differs)
DEVICE = "auto"  # auto | cuda | cuda:1 | cpu
DTYPE = "bf16"  # bf16 | fp16 | fp32 on CUDA (the CPU runs fp32)
CPU_THREADS = 0  # torch threads on the CPU; 0 = torch's default (1 is far faster on a busy, shared machine)
TRUST_REMOTE_CODE = False  # allow model repos that ship their own Python code (a security risk)
LIMIT = 0  # only the first LIMIT test rows (0 = all)
PROGRESS = True  # tqdm bar with rows/s and tokens/s
SMOKE_OVERRIDES = dict(BATCH_SIZE=4, NO_CAPTIONS="zero_shot", CPU_THREADS=1)


# ----------------------------------------------------------------------------------------------------------------------
# inputs


def read_split(cfg, split):
    path = dataset.split_dir(split, cfg.DATA_DIR) / cfg.INFO_FILE
    if not path.is_file() and cfg.INFO_FILE == "info_trans.csv":
        raise InputError(f"{path}: not found; the prompts are written from the English copy (bash "
                         f"run/translation.sh), or pass --INFO_FILE=info.csv for the Vietnamese one")
    if cfg.INFO_FILE != "info.csv":
        dataset.check_translation(path.parent, cfg.INFO_FILE)
    return dataset.read_info(path)


def caption_path(cfg):
    return dataset.split_dir("train", cfg.DATA_DIR) / cfg.CAPTION_FILE


def read_captions(cfg):
    """{train bannerImage: caption}, or None when the file is missing and NO_CAPTIONS=zero_shot."""
    path = caption_path(cfg)
    if not path.is_file():
        if cfg.NO_CAPTIONS == "zero_shot":
            print(f"warning: {path} not found: ZERO-SHOT prompts (no examples). Caption the training banners first "
                  f"(bash run/caption.sh) for the few-shot prompts", file=sys.stderr, flush=True)
            return None
        raise InputError(f"{path}: not found; caption the training banners first (bash run/caption.sh), or pass "
                         f"--NO_CAPTIONS=zero_shot to prompt without examples")
    return files.read_string_map(path, "{bannerImage: caption text}")


def fields_of(cfg):
    fields = [f.strip() for f in cfg.COPY_FIELDS.split(",") if f.strip()]
    bad = [f for f in fields if f not in dataset.TEXT_COLUMNS]
    if not fields or bad:
        raise InputError(f"COPY_FIELDS: {bad or cfg.COPY_FIELDS!r} not among {dataset.TEXT_COLUMNS}")
    return fields


def check_knobs(cfg):
    if cfg.BACKEND not in ("transformers", "vllm"):
        raise InputError(f"BACKEND must be transformers or vllm, got {cfg.BACKEND!r}")
    if cfg.CHAT not in ("auto", "on", "off"):
        raise InputError(f"CHAT must be auto, on or off, got {cfg.CHAT!r}")
    if cfg.NO_CAPTIONS not in ("error", "zero_shot"):
        raise InputError(f"NO_CAPTIONS must be error or zero_shot, got {cfg.NO_CAPTIONS!r}")
    if cfg.K < 0 or cfg.MAX_TRIES < 1 or cfg.BATCH_SIZE < 1 or cfg.MAX_NEW_TOKENS < 1 or cfg.REPETITION_WINDOW < 0:
        raise InputError("K >= 0, MAX_TRIES >= 1, BATCH_SIZE >= 1, MAX_NEW_TOKENS >= 1 and REPETITION_WINDOW >= 0 are "
                         "required")
    if cfg.BACKEND == "vllm" and cfg.REPETITION_PENALTY != 1.0 and cfg.REPETITION_WINDOW:
        raise InputError("BACKEND=vllm penalises repetition over the whole prompt and output (it has no window): pass "
                         "--REPETITION_WINDOW=0 with it, or use BACKEND=transformers")
    for name in ("EXAMPLE_TEMPLATE", "QUERY_TEMPLATE"):
        try:
            few_shot.unescape(getattr(cfg, name)).format(copy="c", caption="d")
        except (KeyError, IndexError, ValueError) as e:
            raise InputError(f"{name}: only {{copy}} and {{caption}} may be used ({e})") from None
    checks.problem("x", (), cfg.CHECKS)  # unknown check names fail here, before any model loads


# ----------------------------------------------------------------------------------------------------------------------
# what makes a prompt: the resume key of every row, and the step's stamp in run/method2.sh

_PROMPT_KNOBS = ("GGUF_FILE", "BACKEND", "INFO_FILE", "COPY_FIELDS", "INSTRUCTION", "QUERY_TEMPLATE", "CHAT",
                 "COPY_MAX_TOKENS", "MAX_PROMPT_TOKENS", "DO_SAMPLE", "TEMPERATURE", "TOP_P", "TOP_K",
                 "REPETITION_PENALTY", "REPETITION_WINDOW", "MAX_NEW_TOKENS", "STOP_AT_FIRST_LINE", "SEED", "MAX_TRIES", "CHECKS", "K")
_FEW_SHOT_KNOBS = ("ENCODER", "EXAMPLE_TEMPLATE", "CAPTION_MAX_TOKENS")


def few_shot_used(cfg):
    """Examples are shown: K > 0 and the training captions exist (else zero-shot, or an error: read_captions)."""
    return cfg.K > 0 and caption_path(cfg).is_file()


def prompt_settings(cfg):
    """The settings that change a prompt. With examples: the encoder that picks them and the training rows they come
    from (their copy and captions, by content), since any of them may be shown to any row."""
    settings = {name: getattr(cfg, name) for name in _PROMPT_KNOBS}
    settings["MODEL"] = models.path(cfg.MODEL, "llm", smoke=cfg.SMOKE)  # SMOKE=1: the tiny model
    settings["DTYPE"] = cfg.DTYPE if cfg.BACKEND == "vllm" else \
        str(devices.pick_dtype(devices.pick_device(cfg.DEVICE), cfg.DTYPE)).removeprefix("torch.")
    if few_shot_used(cfg):
        settings.update({name: getattr(cfg, name) for name in _FEW_SHOT_KNOBS})
        settings["ENCODER"] = models.path(cfg.ENCODER, "few_shot_encoder", smoke=cfg.SMOKE)
        train = dataset.split_dir("train", cfg.DATA_DIR)
        for name, path in (("train copy", train / cfg.INFO_FILE), ("train captions", caption_path(cfg))):
            settings[name] = files.file_hash(path)[:16] if path.is_file() else ""
    return settings


def row_inputs(row, fields):
    """A hash of what a row's prompt is made from besides the settings: its id (its seeds) and its copy."""
    return files.settings_key({"id": row["id"], "copy": [row[f] for f in fields]})


def output_path(cfg):
    return dataset.split_dir("test", cfg.DATA_DIR) / cfg.OUT_FILE


def report_path(cfg):
    """The record of what made each prompt (and which fell back), beside the prompts."""
    out = output_path(cfg)
    return out.with_name(out.stem + "_report.json")


def lock(cfg):
    """One run per output file: a second would write back its own prompts over the first's."""
    return files.FolderLock(output_path(cfg).parent, f".{cfg.OUT_FILE}.lock")


def stage_files(cfg):
    """For run/method2.sh: what this stage reads and writes, the lock it holds, the settings that change a prompt."""
    train, test = (dataset.split_dir(s, cfg.DATA_DIR) for s in ("train", "test"))
    return files.StageFiles(inputs=[train / cfg.INFO_FILE, test / cfg.INFO_FILE, caption_path(cfg)],
                            done=output_path(cfg), settings=prompt_settings(cfg),
                            set_aside=[output_path(cfg), report_path(cfg)], lock=lock(cfg))


# ----------------------------------------------------------------------------------------------------------------------
# models


def load_generator(cfg):
    from prompt_engineer import llm

    sampling = dict(max_new_tokens=cfg.MAX_NEW_TOKENS, temperature=cfg.TEMPERATURE, top_p=cfg.TOP_P, top_k=cfg.TOP_K,
                    repetition_penalty=cfg.REPETITION_PENALTY, repetition_window=cfg.REPETITION_WINDOW)
    if cfg.BACKEND == "vllm":
        return llm.VllmGenerator(cfg.MODEL, cfg.DTYPE, cfg.TRUST_REMOTE_CODE, smoke=cfg.SMOKE, **sampling)
    return llm.load_transformers(cfg.MODEL, cfg.DEVICE, cfg.DTYPE, cfg.TRUST_REMOTE_CODE, cfg.GGUF_FILE,
                                 smoke=cfg.SMOKE, stop_at_first_line=cfg.STOP_AT_FIRST_LINE, **sampling)


def use_chat(cfg, tokenizer):
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if cfg.CHAT == "on" and not has_template:
        raise InputError(f"CHAT=on but the tokenizer of {cfg.MODEL!r} has no chat template (use CHAT=auto or off)")
    return cfg.CHAT == "on" or (cfg.CHAT == "auto" and has_template)


def prompt_budget(cfg, generator):
    window = getattr(getattr(getattr(generator, "model", None), "config", None), "max_position_embeddings", None)
    budget = cfg.MAX_PROMPT_TOKENS
    if isinstance(window, int) and window > cfg.MAX_NEW_TOKENS:
        budget = min(budget, window - cfg.MAX_NEW_TOKENS)
    return budget


# ----------------------------------------------------------------------------------------------------------------------
# the few-shot prompt of every row to do


def build_prompts(cfg, todo, train, captions, generator, chat, log):
    """{row id: (rendered prompt, [texts a generation must not copy])} for the test rows in `todo`."""
    from prompt_engineer import llm

    fields = fields_of(cfg)
    count = generator.count_tokens
    test_copies = [few_shot.row_copy(row, fields) for row in todo]
    nearest = [[] for _ in todo]
    train_copies = []
    if captions is not None and cfg.K > 0:
        from retrieval.encoders import TextEncoder

        train_copies = [few_shot.row_copy(row, fields) for row in train.to_dict("records")]
        captioned = [bool(captions.get(b, "").strip()) for b in train.bannerImage]
        log(f"few-shot: {sum(captioned)} of {len(train)} training rows have a caption; ranked by {cfg.ENCODER}")
        encoder = TextEncoder(cfg.ENCODER, device=cfg.DEVICE, model_key="few_shot_encoder", smoke=cfg.SMOKE)
        name = f"{cfg.INFO_FILE.rsplit('.', 1)[0]}-{'+'.join(fields)}"
        all_copies = [t or "-" for t in train_copies]  # an index needs a text per row; "-" never wins a search
        nearest = few_shot.nearest_captioned(encoder, [t or "-" for t in test_copies], [r["id"] for r in todo],
                                             all_copies, list(train.id), captioned, cfg.K, cfg.DATA_DIR, name)
        del encoder
    budget = prompt_budget(cfg, generator)
    out = {}
    for row, copy, near in zip(todo, test_copies, nearest):
        examples = [(few_shot.cut_sentences(train_copies[j], cfg.COPY_MAX_TOKENS, count),
                     few_shot.cut_sentences(captions[train.bannerImage[j]], cfg.CAPTION_MAX_TOKENS, count))
                    for j in reversed(near)]  # farthest first: the nearest stands just above the test row
        copy = few_shot.cut_sentences(copy, cfg.COPY_MAX_TOKENS, count)

        def make(kept, copy=copy):
            return llm.render(generator.tokenizer, few_shot.prompt_text(
                cfg.INSTRUCTION, cfg.EXAMPLE_TEMPLATE, cfg.QUERY_TEMPLATE, kept, copy), chat)

        prompt, kept = few_shot.fit_examples(examples, make, count, budget)
        # an echo of the row's own copy is no description either (and a fallback gets the copy, counted)
        out[row["id"]] = (prompt, [text for pair in kept for text in pair] + [copy])
    return out


# ----------------------------------------------------------------------------------------------------------------------
# generation: batches of rows, retries of the bad ones, fallbacks


def answer_label(cfg):
    """The words the query ends with ("Advertisement photo description:"), which a model sometimes repeats."""
    tail = few_shot.unescape(cfg.QUERY_TEMPLATE).format(copy="").strip().splitlines()
    return tail[-1].strip() if tail else ""


def clean_output(text, label):
    line = few_shot.first_line(text)
    if label and line.lower().startswith(label.lower()):
        line = line[len(label):].strip()
    return line


def generate_all(cfg, generator, todo, row_prompts, store, log, progress=True):
    """Generate every row of `todo` (dicts of the test rows, each with its `made_from`), retrying bad generations;
    write into `store` (a RecordedStore: each prompt with its record) after every batch. Returns stats."""

    label = answer_label(cfg)
    # longest prompts first: a batch holds prompts of similar length (less padding); retries join the next batch
    queue = collections.deque(sorted(todo, key=lambda r: -generator.count_tokens(row_prompts[r["id"]][0])))
    retry = collections.deque()
    problems = {r["id"]: [] for r in todo}
    stats = dict(llm=0, fallback=0, generations=0, generate_calls=0, tokens=0, problems=collections.Counter())
    bar = progress_bar(total=len(todo), unit="row", desc="prompts", disable=not progress)
    started = time.perf_counter()
    fitting = batching.FittingBatches(cfg.BATCH_SIZE, "rows", log)  # out of memory: smaller batches, same results

    def generate(part):
        outputs = generator.generate([row_prompts[r["id"]][0] for r, _ in part],
                                     [seeds.row_seed(cfg.SEED, f"{r['id']}#{t}") for r, t in part],
                                     sample=[cfg.DO_SAMPLE or t > 0 for _, t in part])  # retries sample
        stats["generate_calls"] += 1
        return outputs

    while queue or retry:
        batch = []
        while len(batch) < fitting.size and (retry or queue):
            batch.append(retry.popleft() if retry else (queue.popleft(), 0))
        outputs = fitting.run(generate, batch)
        for (row, tries), (raw, n_tokens) in zip(batch, outputs):
            stats["generations"] += 1
            stats["tokens"] += n_tokens
            text = clean_output(raw, label)
            issue = checks.problem(text, row_prompts[row["id"]][1], cfg.CHECKS)
            key = row["bannerImage"]
            if not issue:
                store.put(key, text, row["made_from"], source="llm", tries=tries + 1, problems=problems[row["id"]])
                stats["llm"] += 1
                bar.update(1)
                continue
            problems[row["id"]].append(issue)
            stats["problems"][issue] += 1
            if tries + 1 < cfg.MAX_TRIES:
                retry.append((row, tries + 1))
                continue
            # no prompt in the JSON (an older one of the row is removed): the record alone says it fell back
            store.put(key, None, row["made_from"], source="fallback", tries=tries + 1, problems=problems[row["id"]])
            stats["fallback"] += 1
            bar.update(1)
        store.save()
        seconds = time.perf_counter() - started
        bar.set_postfix(tok_s=f"{stats['tokens'] / max(seconds, 1e-9):.0f}", fallback=stats["fallback"])
    bar.close()
    stats["seconds"] = time.perf_counter() - started
    return stats


# ----------------------------------------------------------------------------------------------------------------------


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    knobs.announce_smoke("LLM image prompts", cfg.SMOKE)
    check_knobs(cfg)
    if cfg.CPU_THREADS:
        import torch

        torch.set_num_threads(cfg.CPU_THREADS)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    test_dir = dataset.split_dir("test", cfg.DATA_DIR)
    test = read_split(cfg, "test")
    train = read_split(cfg, "train")
    captions = read_captions(cfg) if cfg.K > 0 else None  # missing: an error, or zero-shot (NO_CAPTIONS)
    out_path = output_path(cfg)
    files.check_writable(test_dir, "test folder", "--DATA_DIR")
    with lock(cfg):
        records = files.ItemRecords(report_path(cfg), prompt_settings(cfg))
        store = files.RecordedStore(out_path, records, every=10 ** 9, what="{bannerImage: prompt}")
        rows = test.to_dict("records")[:cfg.LIMIT or None]
        for row in rows:
            row["made_from"] = row_inputs(row, fields_of(cfg))
        todo = set(files.plan_items({r["bannerImage"]: r["made_from"] for r in rows}, store, records,
                                    cfg.OVERWRITE, out_path, "prompts", "--OVERWRITE=1"))
        todo = [row for row in rows if row["bannerImage"] in todo or (
            cfg.RETRY_FALLBACKS and records.get(row["bannerImage"]).get("source") == "fallback")]
        stats = dict(rows=len(rows), todo=len(todo), llm=0, fallback=0, loaded=False)
        log(f"{len(rows)} test rows, {len(rows) - len(todo)} already made with these settings in {out_path}, "
            f"{len(todo)} to do")
        if not todo:
            return stats
        log(f"loading {models.path(cfg.MODEL, 'llm', smoke=cfg.SMOKE)} ({cfg.BACKEND}) ...")
        generator = load_generator(cfg)
        chat = use_chat(cfg, generator.tokenizer)
        row_prompts = build_prompts(cfg, todo, train, captions, generator, chat, log)
        example = row_prompts[todo[0]["id"]][0]
        log(f"{'chat template' if chat else 'plain text'} prompts, e.g. row id={todo[0]['id']}:\n{example}")
        with store:
            stats.update(generate_all(cfg, generator, todo, row_prompts, store, log, cfg.PROGRESS),
                         loaded=True)
    seconds = max(stats["seconds"], 1e-9)
    problems = ", ".join(f"{k} {v}" for k, v in stats["problems"].most_common()) or "none"
    log(f"wrote {out_path}: {stats['llm']} rows from the LLM, {stats['fallback']} FALLBACKS (no prompt: Method 2 uses their fitted copy) "
        f"(bad generations: {problems}); {stats['generations']} generations in {stats['generate_calls']} batches, "
        f"{stats['seconds']:.1f} s, {len(todo) / seconds:.2f} rows/s, {stats['tokens'] / seconds:.0f} tokens/s")
    return stats


if __name__ == "__main__":
    knobs.run_main(main)
