"""
Prompts that fit the text encoder's window (CLIP: 77 tokens including the start and end tokens), and the copy cleaning
every stage that turns ad copy into a prompt shares (both generation methods, the LLM prompt stage and its few-shot
examples).

The seed joined "{caption}, description is {description} and more information is {moreInfo}" and let the tokenizer
cut the tail silently; `fit_prompt` instead keeps the caption first and adds description and moreInfo only as far as
they fit, counted with the pipeline's own tokenizer, so nothing the encoder sees is cut mid-word and nothing is lost
without the report knowing.

What is dropped on purpose (noise for an image model):
- the supplement disclaimer "Sản phẩm không phải là thuốc…" / "This product is not a medicine…" (426 of the 1362
  train rows, in moreInfo and 4 times in description; found by core/disclaimer.py, the rule the text layer uses too;
  dropped sentence by sentence): legal text, nothing visual, and 15-25 English tokens that push the copy's own words
  out of the window;
- emoji, URLs, phone numbers, hashtags and repeated punctuation.
Category tags in moreInfo ("Cosmetics & Beauty", "Real estate") are KEPT when they fit: 2-5 tokens naming the vertical,
the strongest cue for the kind of picture; they come last, so they are the first thing dropped when space is short.
"""
import re
import unicodedata

from core.copy_text import normalize_copy
from core.disclaimer import is_disclaimer, strip_disclaimer  # noqa: F401 (the prompt stage takes them from here)

SEED_TEMPLATE = "{caption}, description is {description} and more information is {moreInfo}"
# Realistic Vision's recommended negatives, shortened to fit the window (the negative prompt has its own 77 tokens)
NEGATIVE_PROMPT = ("deformed, distorted, disfigured, bad anatomy, extra limbs, blurry, lowres, jpeg artifacts, "
                   "watermark, signature, duplicate, worst quality, low quality, cropped, out of frame")
SEPARATOR = ". "  # between caption, description and moreInfo (captions carry their own commas)
MIN_TAIL_TOKENS = 6  # a truncated description shorter than this says nothing: drop it instead
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# Vietnamese phone numbers (0xx.../+84..., 10-11 digits) and 1800/1900 hotlines; not prices, years or areas
_PHONE = re.compile(r"(?<!\w)(?:(?:\+84[ .-]?|0)\d(?:[ .-]?\d){7,9}|1[89]00[ .-]?\d{3,4}(?:[ .-]?\d{1,3})?)(?!\w)")
_HASHTAG = re.compile(r"#\w+")


def clean(text):
    """Drop what an image model cannot draw: emoji/symbols, URLs, phone numbers, hashtags, repeated punctuation."""
    text = normalize_copy(text)
    text = _URL.sub(" ", text)
    text = _PHONE.sub(" ", text)
    text = _HASHTAG.sub(" ", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("So", "Sk", "Cs", "Co", "Cn", "Cf"))
    text = re.sub(r"([!?.,;:~*_=-])\1+", r"\1", text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", normalize_copy(text))
    return text.strip(" ,.;:-")


def seed_prompt(caption, description, more_info):
    """The seed team's prompt, for comparison (no cleaning, no fitting)."""
    return SEED_TEMPLATE.format(caption=caption, description=description, moreInfo=more_info)


def check_tokenizer(tokenizer, name="tokenizer"):
    """transformers 5 can hand back a 2-token stub (every id the same) when the vocab files are missing, without an
    error; prompts would then be garbage. Refuse such a tokenizer, and one without a usable window."""
    from core.knobs import InputError

    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in ("a red car", "a blue sea")]
    if len(tokenizer) < 1000 or ids[0] == ids[1] or not 8 <= int(tokenizer.model_max_length) <= 4096:
        raise InputError(f"{name}: not a usable tokenizer (vocab {len(tokenizer)}, model_max_length "
                         f"{tokenizer.model_max_length}): vocab/merges files missing?")
    return tokenizer


def token_counter(tokenizer):
    """Tokens `text` takes inside the window, start/end tokens excluded (the same tokenizer the pipeline runs)."""
    # counting overlong text on purpose: silence transformers' one-time "longer than the maximum" warning
    getattr(tokenizer, "deprecation_warnings", {})["sequence-length-is-longer-than-the-specified-maximum"] = True
    def count(text):
        return len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])
    return count


def window(tokenizer):
    """Content tokens that fit: model_max_length (77 for CLIP) minus the start and end tokens."""
    return int(tokenizer.model_max_length) - 2


def _join(head, tail):
    return f"{head}{SEPARATOR}{tail}" if head else tail


def _truncate_words(head, text, count, budget):
    """`head` + the longest word prefix of `text` that fits in `budget` tokens (binary search), or None."""
    words = text.split()
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(_join(head, " ".join(words[:mid]))) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return _join(head, " ".join(words[:lo]).rstrip(" ,.;:-")) if lo else None


def fit_prompt(caption, description, more_info, count, budget=75, style=""):
    """Build a prompt of at most `budget` tokens: caption first, then description, then moreInfo, then `style`.

    The caption is cut at a word boundary only when it alone overflows; a description that does not fit whole is cut
    at a word boundary when at least MIN_TAIL_TOKENS of it fit, otherwise dropped; moreInfo and style fit whole or are
    dropped. Returns (prompt, notes) with notes a dict: {part: "kept" | "cut" | "dropped" | "empty" | "disclaimer"}.
    """
    raw = {"caption": caption or "", "description": description or "", "moreInfo": more_info or ""}
    parts = [(name, clean(strip_disclaimer(text) if name != "caption" else text)) for name, text in raw.items()]
    if style:
        parts.append(("style", clean(style)))
    prompt, notes = "", {}
    for name, text in parts:
        if not text:
            notes[name] = "disclaimer" if is_disclaimer(raw.get(name, "")) else "empty"
            continue
        candidate = _join(prompt, text)
        if count(candidate) <= budget:
            prompt, notes[name] = candidate, "kept"
            continue
        cut = None
        if name == "caption" or (name == "description" and count(prompt) + MIN_TAIL_TOKENS < budget):
            cut = _truncate_words(prompt, text, count, budget)
            if cut is not None and name == "description" and count(cut) - count(prompt) < MIN_TAIL_TOKENS:
                cut = None
        if cut is None and name == "caption":  # one enormous "word": fall back to cutting tokens
            cut = text[:max(1, len(text) * budget // max(1, count(text)))]
            while count(cut) > budget:
                cut = cut[:-1]
        if cut is not None:
            prompt, notes[name] = cut, "cut"
        else:
            notes[name] = "dropped"
    return prompt, notes
