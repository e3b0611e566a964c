"""
Caption every training banner with a vision-language model: $DATA_DIR/train/{info.csv, images/} ->
$DATA_DIR/train/llava_caption.json ({bannerImage: caption}), what Method 2 fine-tunes SD 2.1 on, and beside it
llava_caption_report.json: what made each caption (the settings that change a caption, and a hash of the row's id,
question and banner bytes).

The seed ran LLaVA-1.5-7B from the LLaVA repository one image at a time (over an hour); here it is transformers'
image-text-to-text classes, batched with left padding, fp16 on CUDA. The question is the seed's template, filled with
the row's English copy (info_trans.csv) or, where a row has no translation, its Vietnamese text (info.csv); the run says
how many rows used which.

- Resumable: a row whose caption was made with the same settings and inputs is skipped; one made otherwise (another
  GREEDY, SEED, MODEL, PROMPT..., or a changed banner or copy) is refused in one line naming what differs, and
  OVERWRITE=1 redoes it: a rerun never mixes captions of two settings. The JSON (and its record) is replaced
  atomically every SAVE_EVERY captions, so a kill loses at most that many.
- Several processes (`accelerate launch -m preprocessing.caption`): each captions every world-th row into its own rank
  file; rank 0 merges them into the one JSON.
- Per-row seeds: when sampling (the seed's temperature 0.2), each row draws its tokens from its own random stream
  (row_seed(SEED, id)), so a caption does not depend on batch size, order or process count. GREEDY=1 decodes greedily.
- An unreadable banner stops the run with one line naming it; SKIP_BAD=1 goes on, lists the skipped banners at the end
  and exits non-zero (every caption made is kept).
- Each banner is padded to a square of the processor's image mean first (PAD_TO_SQUARE, the original LLaVA code's
  expand2square): the llava-hf processor resizes the short side and center-crops, so it would see only the middle half.
- At the end: how many captions are longer than SD 2.1's 77-token text window (training truncates them).

usage: bash run/caption.sh [--GREEDY=1] [--BATCH_SIZE=16] [--MODEL=llava-hf/llava-1.5-7b-hf] [--help]
       accelerate launch -m preprocessing.caption [--NAME=value ...]
"""
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import models
from core import batching, dataset, devices, errors, files, images, knobs, seeds
from core.copy_text import normalize_copy
from core.progress import progress

DATA_DIR = "data"  # the data folder (also from env DATA_DIR: the run/*.sh contract)
SPLIT = "train"  # the split folder under DATA_DIR whose banners are captioned
OUTPUT = ""  # the captions JSON; "" = $DATA_DIR/$SPLIT/llava_caption.json
MODEL = models.LLAVA  # image-text-to-text model: hub id[@revision] or local folder; SMOKE=1: tiny random LLaVA
PAD_TO_SQUARE = True  # pad each banner to a square of the processor's mean colour first, as LLaVA's own code does
PROMPT = ('Given image is advertising about following information: "{caption}{description}". '  # the seed's; fills
          'What is happening in the image ?')  # {caption} {description} {moreInfo}
# the system text of the seed's LLaVA conversation (llava_v1, LLaVA-1.5's training format); "" = none
SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the human's questions.")
CHAT_FORMAT = "USER: <image>\n{question} ASSISTANT:"  # used only when the processor has no chat template
BATCH_SIZE = 16  # images per generate call (halved automatically on out-of-memory, core/batching.py)
MAX_NEW_TOKENS = 77  # the seed's answer length
TEMPERATURE = 0.2  # the seed's sampling temperature
GREEDY = False  # greedy decoding instead of sampling
SEED = 0  # run seed; each row samples from row_seed(SEED, id)
SAVE_EVERY = 16  # the JSON is replaced after this many new captions (a kill loses at most this many)
SKIP_BAD = False  # an unreadable banner is skipped and listed (exit non-zero at the end) instead of stopping the run
OVERWRITE = False  # redo captions made with other settings or inputs (else the run refuses them, naming what differs)
DEVICE = "auto"  # auto | cuda | cuda:1 | cpu (under accelerate launch: the process's device)
DTYPE = "fp16"  # fp16 | bf16 | fp32 on CUDA; the CPU always runs fp32
CPU_THREADS = 0  # torch threads on the CPU; 0 = torch's default
SUPPRESS_BLANK_START = True  # forbid a first token that cleans to nothing (random/weak models otherwise answer "")
TRUST_REMOTE_CODE = False  # allow model repos that ship their own Python code (off: a security risk)
TOKENIZER = models.SD21  # for the report: the text tokenizer training uses (hub id[@revision] or folder)
TOKENIZER_SUBFOLDER = "tokenizer"  # its subfolder ("" for a bare tokenizer folder)
TOKEN_LIMIT = 77  # SD 2.1's text window, start and end tokens included
PROGRESS = True  # show the tqdm progress bar (images/s)

SMOKE_OVERRIDES = dict(BATCH_SIZE=4, SAVE_EVERY=4, CPU_THREADS=1)

_QUESTION_TAIL = "What is happening in the image ?"  # an answer that starts by repeating it gets it cut
_TURN_MARKERS = re.compile(r"(?:\b(?:USER|ASSISTANT|SYSTEM|Human|Assistant)\s*:|<\|[a-z_]+\|>|</?s>|<image>|###)")
_SENTENCE_END = re.compile(r"""[.!?]["')\]]*(?=\s|$)""")
_WHAT = "{bannerImage: caption}"


# ----------------------------------------------------------------------------------------------------------------------
# rows and questions


def read_rows(data_dir, split):
    """[{id, bannerImage, image, question fields, text}] of the split, in file order; `text` is "en" where
    info_trans.csv has the row's caption or description, else "vi" (the Vietnamese info.csv text)."""
    folder = dataset.split_dir(split, data_dir)
    info = dataset.read_info(folder / "info.csv")
    trans_path = folder / "info_trans.csv"
    trans = {}
    if trans_path.exists():
        trans = {r["id"]: r for r in dataset.read_info(trans_path).to_dict("records")}
    rows = []
    for row in info.to_dict("records"):
        english = trans.get(row["id"])
        use_en = english is not None and bool(english["caption"] or english["description"])
        source = english if use_en else row
        rows.append(dict(id=row["id"], bannerImage=row["bannerImage"], image=folder / "images" / row["bannerImage"],
                         text="en" if use_en else "vi",
                         **{c: normalize_copy(source[c]) for c in dataset.TEXT_COLUMNS}))
    return rows, trans_path.exists()


def question(template, row):
    try:
        return template.format(**{c: row[c] for c in dataset.TEXT_COLUMNS})
    except (KeyError, IndexError, ValueError) as e:
        raise knobs.InputError(f"PROMPT: only {{caption}}, {{description}} and {{moreInfo}} can be filled in "
                               f"({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------------------------------------------------
# cleaning an answer


def clean_caption(answer, asked="", finished=True):
    """The caption in a raw answer: no chat-template residue, no echoed question, whitespace normalised, and (when the
    answer hit the token limit instead of ending) the trailing half sentence cut, if a whole sentence is left."""
    text = "".join(ch if ch.isprintable() or ch.isspace() else " " for ch in answer.replace("\ufffd", ""))
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^(?:\s*(?:ASSISTANT|Assistant|<\|assistant\|>)\s*:?)+", "", text).strip()  # the turn it answers
    marker = _TURN_MARKERS.search(text)
    if marker:  # a new turn begins: the model went on with the conversation
        text = text[:marker.start()].strip()
    for echo in (asked, _QUESTION_TAIL):
        echo = re.sub(r"\s+", " ", echo).strip()
        if echo and text.lower().startswith(echo.lower()):
            text = text[len(echo):].strip()
    if not finished:
        ends = list(_SENTENCE_END.finditer(text))
        if ends and ends[-1].end() < len(text):
            text = text[:ends[-1].end()]
    return text.strip()


# ----------------------------------------------------------------------------------------------------------------------
# the model


def load_model(cfg, device):
    """(processor, model) of cfg.MODEL; the tokenizer pads on the left, as batched decoder-only generation needs."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from core.sampling import blank_token_ids

    processor = models.load(AutoProcessor.from_pretrained, cfg.MODEL, "llava", smoke=cfg.SMOKE,
                            trust_remote_code=cfg.TRUST_REMOTE_CODE)
    processor.tokenizer.padding_side = "left"
    model = models.load(AutoModelForImageTextToText.from_pretrained, cfg.MODEL, "llava", smoke=cfg.SMOKE,
                        dtype=devices.pick_dtype(device, cfg.DTYPE), trust_remote_code=cfg.TRUST_REMOTE_CODE)
    # ids that are nothing once cleaned (pad, a lone space or newline, a control byte): never the first token
    model.blank_start_ids = (blank_token_ids(processor.tokenizer, lambda text: not clean_caption(text))
                             if cfg.SUPPRESS_BLANK_START else [])
    return processor, model.to(device).eval()


def chat_prompt(processor, asked, fallback, system=""):
    """The model's own chat template around the system text, one image and the question (fallback format if it has
    none). llava-hf's template writes a system message as its bare text: "<system> USER: <image>\n<question>
    ASSISTANT:", the string LLaVA's own llava_v1 conversation builds."""
    if getattr(processor, "chat_template", None):
        messages = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": asked}]})
        return processor.apply_chat_template(messages, add_generation_prompt=True)
    return (f"{system} " if system else "") + fallback.format(question=asked)


def generate(cfg, processor, model, batch, device):
    """Raw answers of a prepared batch: [(text, finished)], finished = the model ended it before the token limit."""
    import torch

    enc = batch["inputs"]
    inputs = {k: v.to(device) for k, v in enc.items()}
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    prompt_length = inputs["input_ids"].shape[1]
    kwargs = dict(max_new_tokens=cfg.MAX_NEW_TOKENS, min_new_tokens=1, do_sample=False,
                  pad_token_id=processor.tokenizer.pad_token_id)
    if getattr(model, "blank_start_ids", None):
        kwargs["begin_suppress_tokens"] = model.blank_start_ids
    if not cfg.GREEDY:
        from core.sampling import RowSampler

        row_seeds = [seeds.row_seed(cfg.SEED, row["id"]) for row in batch["rows"]]
        pad_lengths = (inputs["attention_mask"] == 0).sum(1)  # left padding (matters only to a repetition penalty)
        kwargs["logits_processor"] = [RowSampler(row_seeds, pad_lengths, True, temperature=cfg.TEMPERATURE)]
    with torch.inference_mode():
        out = model.generate(**inputs, **kwargs)
    new = out[:, prompt_length:].cpu()
    eos = model.generation_config.eos_token_id
    eos = [i for i in (eos if isinstance(eos, (list, tuple)) else [eos]) if i is not None]
    eos = torch.tensor(eos, dtype=new.dtype)
    texts = processor.batch_decode(new, skip_special_tokens=True)
    return [(text, bool(torch.isin(ids, eos).any())) for text, ids in zip(texts, new)]


def generate_fitting(cfg, processor, model, batch, device, batches):
    """generate() over a prepared batch in the largest parts that fit in memory (`batches`: core.batching's
    FittingBatches; per-row seeds: the captions do not change)."""
    def part(rows):
        a, b = rows[0], rows[-1] + 1
        return generate(cfg, processor, model, {"rows": batch["rows"][a:b], "questions": batch["questions"][a:b],
                                                "inputs": {k: v[a:b] for k, v in batch["inputs"].items()}}, device)

    return batches.run(part, list(range(len(batch["rows"]))))


# ----------------------------------------------------------------------------------------------------------------------
# the run


def pad_to_square(image, colour):
    """The banner centred on a square of `colour` (the original LLaVA's expand2square). The llava-hf processor resizes
    the short side and center-crops a square: without this, a 1024x533 banner would lose its left and right quarters."""
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), colour)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def mean_colour(processor):
    """The processor's image mean as an RGB colour (what LLaVA pads with: it normalises to zero)."""
    mean = getattr(getattr(processor, "image_processor", None), "image_mean", None) or (0.5, 0.5, 0.5)
    return tuple(int(x * 255) for x in mean)


def prepare_batch(cfg, processor, rows):
    """Load the batch's banners and encode them with their questions (runs in a background thread while the model
    works on the previous batch). Returns {rows, questions, inputs, bad: [(row, reason)]}."""
    loaded, bad = [], []
    for row in rows:
        try:
            image = images.load_rgb(row["image"])
            loaded.append((row, pad_to_square(image, mean_colour(processor)) if cfg.PAD_TO_SQUARE else image))
        except knobs.InputError as e:
            if not cfg.SKIP_BAD:
                raise knobs.InputError(f"row id={row['id']}: {e} (--SKIP_BAD=1 skips such banners)") from None
            bad.append((row, str(e)))
    batch = dict(rows=[r for r, _ in loaded], questions=[question(cfg.PROMPT, r) for r, _ in loaded], bad=bad)
    if loaded:
        prompts = [chat_prompt(processor, q, cfg.CHAT_FORMAT, cfg.SYSTEM) for q in batch["questions"]]
        batch["inputs"] = processor(images=[im for _, im in loaded], text=prompts, padding=True, return_tensors="pt")
    return batch


def prefetched(fn, batches):
    """fn(batch) for each batch, the next one computed in a background thread while the caller uses the current."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(fn, batches[0]) if batches else None
        for i in range(len(batches)):
            result = pending.result()
            pending = pool.submit(fn, batches[i + 1]) if i + 1 < len(batches) else None
            yield result


def caption_settings(cfg, device):
    """The settings that change a caption: each caption's record, and the step's stamp in run/method2.sh."""
    settings = {name: getattr(cfg, name) for name in ("PROMPT", "SYSTEM", "CHAT_FORMAT", "MAX_NEW_TOKENS", "GREEDY",
                                                      "SUPPRESS_BLANK_START", "PAD_TO_SQUARE")}
    settings["MODEL"] = models.path(cfg.MODEL, "llava", smoke=cfg.SMOKE)  # SMOKE=1: the tiny model
    settings["DTYPE"] = str(devices.pick_dtype(device, cfg.DTYPE)).removeprefix("torch.")  # the CPU runs fp32
    if not cfg.GREEDY:  # only sampling draws from the seed and the temperature
        settings.update(TEMPERATURE=cfg.TEMPERATURE, SEED=cfg.SEED)
    return settings


def row_inputs(cfg, row):
    """A hash of what a row's caption is made from besides the settings: its id (its seed), question and banner."""
    image = files.file_hash(row["image"]) if row["image"].is_file() else ""
    return files.settings_key({"id": row["id"], "question": question(cfg.PROMPT, row), "image": image})


def output_path(cfg):
    return Path(cfg.OUTPUT) if cfg.OUTPUT else dataset.split_dir(cfg.SPLIT, cfg.DATA_DIR) / "llava_caption.json"


def records_path(output):
    """The record of what made each caption, beside the captions (or a process's share of them)."""
    return output.with_name(f"{output.stem}_report{output.suffix}")


def lock(output, rank=0):
    """One run per output file and process: a second would write back its own dict over the first's captions."""
    return files.FolderLock(output.parent, f".{output.name}.rank{rank}.lock")


def stage_files(cfg):
    """For run/method2.sh: what this stage reads and writes, the lock it holds, the settings that change a caption."""
    split = dataset.split_dir(cfg.SPLIT, cfg.DATA_DIR)
    output = output_path(cfg)
    return files.StageFiles(inputs=[split / "info.csv", split / "info_trans.csv", split / "images"], done=output,
                            settings=caption_settings(cfg, devices.pick_device(cfg.DEVICE)),
                            set_aside=[output, records_path(output)], lock=lock(output))


def rank_path(output, rank):
    return output.with_name(f"{output.stem}.rank{rank}{output.suffix}")


def rank_files(output):
    name = re.compile(rf"{re.escape(output.stem)}\.rank\d+{re.escape(output.suffix)}")
    return sorted(p for p in output.parent.glob(f"{output.stem}.rank*") if name.fullmatch(p.name))


def merge(output):
    """The shares of several processes (rank files, with their records) folded into the one JSON, then removed: rank
    0 does it after every process finished, and at the start for those an interrupted run left."""
    parts = rank_files(output)
    if not parts:
        return
    captions = files.read_string_map(output, _WHAT, {})
    records = files.ItemRecords(records_path(output))
    for part in parts:
        captions.update(files.read_string_map(part, _WHAT, {}))
        records.update(files.ItemRecords(records_path(part)))
    records.save()  # before the captions: a caption is never without its record
    files.write_json(output, captions)
    for part in parts:
        part.unlink()
        records_path(part).unlink(missing_ok=True)


def caption_rows(cfg, rows, store, processor, model, device, log=print):
    """Caption `rows` into `store` (a RecordedStore: each caption put with its row's `made_from`, as they come).
    Returns (skipped [(row, reason)], empty [row])."""

    batches = [rows[i:i + cfg.BATCH_SIZE] for i in range(0, len(rows), cfg.BATCH_SIZE)]
    skipped, empty, done, started = [], [], 0, time.perf_counter()
    fitting = batching.FittingBatches(cfg.BATCH_SIZE, "images", log)
    bar = progress(total=len(rows), unit="img", desc="caption", disable=not cfg.PROGRESS)
    try:
        for batch in prefetched(lambda b: prepare_batch(cfg, processor, b), batches):
            for row, reason in batch["bad"]:
                log(f"skipped row id={row['id']}: {reason}")
            skipped += batch["bad"]
            if batch["rows"]:
                answers = generate_fitting(cfg, processor, model, batch, device, fitting)
                for row, asked, (answer, finished) in zip(batch["rows"], batch["questions"], answers):
                    text = clean_caption(answer, asked, finished)
                    if text:
                        store.put(row["bannerImage"], text, row["made_from"])
                        done += 1
                    else:  # listed at the end; an older caption of the row is not kept in its place
                        store.discard(row["bannerImage"])
                        empty.append(row)
            bar.update(len(batch["rows"]) + len(batch["bad"]))
    finally:
        store.save()
        bar.close()
    seconds = time.perf_counter() - started
    if rows:
        log(f"captioned {done} banners in {seconds:.1f} s ({done / max(seconds, 1e-9):.2f} images/s)")
    return skipped, empty


def token_report(cfg, captions, log=print):
    """How many captions exceed TOKEN_LIMIT tokens of the training text encoder's tokenizer (training truncates
    them)."""
    from transformers import AutoTokenizer

    if not captions:
        log("token report: no captions")
        return 0
    kwargs = {"subfolder": cfg.TOKENIZER_SUBFOLDER} if cfg.TOKENIZER_SUBFOLDER else {}
    try:
        tokenizer = models.load(AutoTokenizer.from_pretrained, cfg.TOKENIZER, "sd21", smoke=cfg.SMOKE, **kwargs)
    except knobs.InputError as e:
        log(f"token report skipped: {e}")
        return None
    ids = tokenizer(list(captions.values()), verbose=False)["input_ids"]
    lengths = {k: len(i) for k, i in zip(captions, ids)}
    over = sorted((k for k, n in lengths.items() if n > cfg.TOKEN_LIMIT), key=lambda k: -lengths[k])
    longest = max(lengths.values(), default=0)
    log(f"{len(over)} of {len(captions)} captions exceed {cfg.TOKEN_LIMIT} tokens of {cfg.TOKENIZER}'s tokenizer "
        f"(training truncates them; longest {longest})" + (f": {', '.join(over[:10])}" if over else ""))
    return len(over)


def plan(cfg, rows, output, records):
    """This run's rows still to caption (the rest were made with these settings and inputs; a row made otherwise is
    refused, naming what differs, unless OVERWRITE). Each row gets `made_from`, its record's inputs hash."""
    for row in rows:
        row["made_from"] = row_inputs(cfg, row)
    done = files.read_string_map(output, _WHAT, {})  # values checked: text, not numbers or null
    todo = set(files.plan_items({r["bannerImage"]: r["made_from"] for r in rows}, done, records, cfg.OVERWRITE,
                                output, "captions", "--OVERWRITE=1 (or another --OUTPUT)"))
    return [r for r in rows if r["bannerImage"] in todo]


def run(cfg, rank=0, world=1, device="cpu", log=print):
    """Caption this process's share of the split's rows not yet captioned with these settings; rank 0 merges and
    reports. Returns the merged {bannerImage: caption} (rank 0) or None."""
    split = dataset.split_dir(cfg.SPLIT, cfg.DATA_DIR)
    output = output_path(cfg)
    rows, has_trans = read_rows(cfg.DATA_DIR, cfg.SPLIT)
    question(cfg.PROMPT, rows[0])  # a broken PROMPT knob fails now, not after the model loads
    files.check_writable(output.parent, "captions folder", "--OUTPUT")
    with lock(output, rank):
        if rank == 0:
            merge(output)  # what the processes of an interrupted run left, first
        devices.wait_for_everyone()
        records = files.ItemRecords(records_path(output), caption_settings(cfg, device))
        # shard every row first, then drop the finished ones: each row belongs to one rank whatever the others wrote
        mine = devices.shard(rows, rank, world)
        todo = plan(cfg, mine, output, records)
        vi = [r["id"] for r in todo if r["text"] == "vi"]
        if not has_trans and rank == 0:
            log(f"note: no {split / 'info_trans.csv'}: every question uses the Vietnamese text "
                f"(run bash run/translation.sh first for the English copy the seed used)")
        log(f"rank {rank}/{world}: {len(rows)} rows, {len(mine) - len(todo)} already captioned with these settings, "
            f"{len(todo)} to caption here "
            f"({len(todo) - len(vi)} with the English text of info_trans.csv, {len(vi)} with the Vietnamese info.csv "
            f"text" + (f": ids {', '.join(vi[:10])}{' ...' if len(vi) > 10 else ''})" if vi else ")"))
        skipped, empty = [], []
        missing = [r for r in todo if not r["image"].is_file()]  # before the model loads: the cheap check
        if missing and not cfg.SKIP_BAD:
            raise knobs.InputError(f"row id={missing[0]['id']}: image not found: {missing[0]['image']} "
                                   f"(--SKIP_BAD=1 skips such banners)")
        skipped += [(r, f"image not found: {r['image']}") for r in missing]
        todo = [r for r in todo if r["image"].is_file()]
        if todo:
            processor, model = load_model(cfg, device)
            if world > 1:  # this process's share into its own files (its records start empty: merged above)
                part = rank_path(output, rank)
                records = files.ItemRecords(records_path(part), caption_settings(cfg, device))
            with files.RecordedStore(output if world == 1 else part, records, cfg.SAVE_EVERY, _WHAT) as store:
                bad, empty = caption_rows(cfg, todo, store, processor, model, device, log)
            skipped += bad
        devices.wait_for_everyone()
        captions = None
        if rank == 0:
            merge(output)
            captions = files.read_string_map(output, _WHAT, {})
            ours = {r["bannerImage"]: captions[r["bannerImage"]] for r in rows if r["bannerImage"] in captions}
            texts = [r["text"] for r in rows if r["bannerImage"] in captions]
            log(f"wrote {output}: {len(ours)} of {len(rows)} rows captioned ({texts.count('en')} from English, "
                f"{texts.count('vi')} from Vietnamese questions)")
            token_report(cfg, ours, log)
        problems = [f"{r['bannerImage']} (id={r['id']}): {why}" for r, why in skipped]
        problems += [f"{r['bannerImage']} (id={r['id']}): the model's answer was empty after cleaning" for r in empty]
        if problems:
            if len(problems) <= errors.SHOWN:
                for line in problems:
                    log(f"not captioned: {line}")
            failures = output.with_name(f"{output.stem}_failures.txt")
            raise knobs.InputError(f"{len(problems)} banner(s) not captioned: {errors.error_list(problems, failures)} "
                                   f"(every other caption is saved in {output})")
        return captions


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    knobs.announce_smoke("caption", cfg.SMOKE)
    if cfg.BATCH_SIZE < 1 or cfg.SAVE_EVERY < 1 or cfg.MAX_NEW_TOKENS < 1:
        raise knobs.InputError("BATCH_SIZE, SAVE_EVERY and MAX_NEW_TOKENS must be at least 1")
    if not cfg.GREEDY and cfg.TEMPERATURE <= 0:
        raise knobs.InputError(f"TEMPERATURE must be > 0 when sampling, got {cfg.TEMPERATURE} (or pass --GREEDY=1)")
    rank, world, device = devices.process_info()
    device = device if world > 1 else devices.pick_device(cfg.DEVICE)
    if cfg.CPU_THREADS and device == "cpu":
        import torch

        torch.set_num_threads(cfg.CPU_THREADS)
    return run(cfg, rank, world, device)


if __name__ == "__main__":
    knobs.run_main(main)
