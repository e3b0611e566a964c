"""
The few-shot prompt: for a test row, the K training rows whose English copy is nearest (the retrieval stage's cached
index and exact search, a sentence encoder), each shown as its copy and its VLM caption, then the test row's copy.

    <INSTRUCTION>

    Advertisement: <copy of the 2nd nearest train row>
    Advertisement photo description: <its caption from train/llava_caption.json>

    Advertisement: <copy of the nearest train row>
    Advertisement photo description: <its caption>

    Advertisement: <copy of the test row>
    Advertisement photo description:

The nearest example stands last, just above the test row (the text a model imitates most). Training rows without a
caption are never shown: an example without its description teaches nothing, and one that showed its copy instead
would teach the model to echo the copy; the search looks past them to the next captioned rows.
Texts longer than their token budget are cut at sentence ends (at a word boundary only when the first sentence alone is
too long); when the whole prompt is still too long, the farthest examples are dropped.
"""
import re
from pathlib import Path

from core.copy_text import normalize_copy
from core.knobs import InputError
from core.prompt_fit import clean, strip_disclaimer
from retrieval.retrieve import index_name

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


def row_copy(row, fields):
    """The row's copy for the prompt: its `fields` (caption, description, ...) cleaned (no disclaimer, emoji, URL,
    phone) and joined with '. '."""
    parts = []
    for field in fields:
        # the disclaimer split first: it cuts at newlines, which the copy rule turns into spaces
        text = clean(normalize_copy(row[field] if field == "caption" else strip_disclaimer(row[field])))
        if text:
            parts.append(text)
    return ". ".join(parts)


def cut_sentences(text, max_tokens, count):
    """`text` if it fits in `max_tokens` (as `count` counts); else its longest run of whole leading sentences that
    fits; else (the first sentence alone is too long) its longest word prefix that fits."""
    text = (text or "").strip()
    if max_tokens <= 0 or count(text) <= max_tokens:
        return text
    sentences = _SENTENCE_END.split(text)
    kept = ""
    for sentence in sentences:
        candidate = f"{kept} {sentence}".strip()
        if count(candidate) > max_tokens:
            break
        kept = candidate
    if kept:
        return kept
    words = text.split()
    lo, hi = 0, len(words)
    while lo < hi:  # binary search on the number of words
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def first_line(text):
    """The first non-blank line of a generation, stripped."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def unescape(template):
    r"""Templates given on the command line carry `\n` as two characters: make them newlines."""
    return template.replace("\\n", "\n")


def prompt_text(instruction, example_template, query_template, examples, copy):
    """The few-shot text: instruction, then each (copy, caption) example (farthest first), then the test row."""
    blocks = [unescape(instruction).strip()] if instruction.strip() else []
    blocks += [unescape(example_template).format(copy=c, caption=cap) for c, cap in examples]
    blocks.append(unescape(query_template).format(copy=copy))
    return "\n\n".join(blocks)


def fit_examples(examples, make_prompt, count, budget):
    """(prompt, examples kept): `make_prompt(examples)` with the farthest examples (first in the list) dropped until
    the rendered prompt has at most `budget` tokens."""
    examples = list(examples)
    while True:
        prompt = make_prompt(examples)
        if count(prompt) <= budget or not examples:
            return prompt, examples
        examples = examples[1:]


def index_dir(data_dir, split, encoder, name):
    """Where the retrieval index of a split's texts lives: beside the retrieval stage's indexes, named as it names
    them."""
    return Path(data_dir) / split / "index" / index_name(encoder, name)


def nearest_captioned(encoder, test_texts, test_ids, train_texts, train_ids, captioned, k, data_dir, name,
                      device="cpu"):
    """For each test text, the row numbers of its k nearest training rows that have a caption, nearest first.

    Both sides go through the retrieval stage's on-disk index (rebuilt only for changed rows) and its exact search;
    the search asks for k + the number of uncaptioned rows, so k captioned ones are always among the results."""
    from retrieval.neighbours import pool_of, retrieve

    if k <= 0:
        return [[] for _ in test_texts]
    usable = sum(captioned)
    if usable == 0:
        raise InputError("no training row has a caption: nothing to show as a few-shot example")
    pool = pool_of(train_texts, encoder, index_dir(data_dir, "train", encoder, name), ids=train_ids)
    queries = pool_of(test_texts, encoder, index_dir(data_dir, "test", encoder, name), ids=test_ids)
    wanted = min(len(train_texts), k + len(train_texts) - usable)
    rows, _ = retrieve(queries.embeddings(), pool, encoder, wanted, device=device)
    return [[int(r) for r in found if captioned[int(r)]][:k] for found in rows]
