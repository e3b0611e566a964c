"""
Is a generated image description usable? `problem(text, examples, checks)` names the first thing wrong, or "".

- empty:   no letter or digit at all (a weak model's first token is often EOS, a newline or a pad token), or only a
           lead-in ("Here is a description of the photo:") whose description would be on the next line.
- garbled: broken decoding: a replacement character (U+FFFD, half of a multi-byte character) or a control character;
           or a "word" of more than LONGEST_WORD letters (words run together: seen from Gemma 3 270M).
- repeat:  the same words over and over: of its word 3-grams, more than REPEAT_MAX are repeats, or one word is more
           than WORD_MAX of the words (a loop such as "red red red red").
- copy:    a few-shot example's description (or copy) given back: COPY_MAX or more of its word 3-grams come from one
           example, or the same words in the same order.
- english: not English although English was asked: fewer than ASCII_MIN of its letters are ASCII (Vietnamese
           diacritics, other scripts), or from 5 words on none of them is a common English word.
Simple heuristics, on purpose: each costs microseconds and has an obvious failure mode the README states.
"""
import re
import unicodedata

CHECKS = ("empty", "garbled", "repeat", "copy", "english")
REPEAT_MAX = 0.5
WORD_MAX = 0.4
COPY_MAX = 0.8
ASCII_MIN = 0.9
LONGEST_WORD = 30  # "pneumonoultramicroscopic..." is 45, but no banner description needs one
ENGLISH_WORDS = frozenset(
    "a an the of and or with in on at to for from by is are was be as its it this that their his her two one "
    "some over under near while background foreground front behind left right top bottom next text image photo "
    "picture banner man woman people person product shows showing white black red blue green yellow".split())


def words(text):
    return re.findall(r"\w+", unicodedata.normalize("NFC", text or "").lower())


def _trigrams(ws):
    return [tuple(ws[i:i + 3]) for i in range(len(ws) - 2)]


def is_empty(text):
    return not words(text) or text.rstrip().endswith(":")


def is_garbled(text):
    broken = any(c == "\ufffd" or unicodedata.category(c) == "Cc" and c not in "\t\n" for c in text or "")
    return broken or any(len(w) > LONGEST_WORD for w in re.findall(r"[^\W\d_]+", text or ""))


def is_repeated(text):
    ws = words(text)
    if len(ws) < 6:
        return False
    grams = _trigrams(ws)
    repeated = 1 - len(set(grams)) / len(grams)
    top = max(ws.count(w) for w in set(ws)) / len(ws)
    return repeated > REPEAT_MAX or top > WORD_MAX


def is_copy(text, examples):
    """`text` is (nearly) one of `examples`: its 3-grams mostly from that example, or the same word sequence."""
    ws = words(text)
    for example in examples:
        ex = words(example)
        if not ex:
            continue
        if ws == ex:
            return True
        grams, ex_grams = _trigrams(ws), set(_trigrams(ex))
        if len(grams) >= 3 and sum(g in ex_grams for g in grams) / len(grams) >= COPY_MAX:
            return True
    return False


def is_not_english(text):
    letters = [c for c in unicodedata.normalize("NFC", text or "") if c.isalpha()]
    if letters and sum(c.isascii() for c in letters) / len(letters) < ASCII_MIN:
        return True
    ws = words(text)
    return len(ws) >= 5 and not any(w in ENGLISH_WORDS for w in ws)


def problem(text, examples=(), checks=CHECKS):
    """The first failed check's name (one of CHECKS), or "" when the text is usable."""
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        from core.knobs import InputError

        raise InputError(f"CHECKS: unknown check(s) {unknown}; known: {list(CHECKS)}")
    if is_empty(text):
        return "empty"  # always: an empty prompt is never usable
    if "garbled" in checks and is_garbled(text):
        return "garbled"
    if "repeat" in checks and is_repeated(text):
        return "repeat"
    if "copy" in checks and is_copy(text, examples):
        return "copy"
    if "english" in checks and is_not_english(text):
        return "english"
    return ""
