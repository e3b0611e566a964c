"""
The one rule for reading ad copy, shared by every stage that reads it (the text layer, the LLM prompts, the
translation input): characters nobody can see are not part of the copy.

The competition's copy carries invisible characters (a U+0008 in a public test caption, tabs in the training copy,
zero-width spaces and non-breaking spaces pasted from web pages). Left in, they stop the text layer ("no glyph for
'\\x08'"), split cache keys and reach the models as noise.
"""
import re
import unicodedata

_INVISIBLE = ("Cc", "Cf")  # control (U+0000-001F, U+007F-009F) and format (U+200B, U+200D, U+FEFF, U+00AD, ...)
_SPACES = re.compile(r"\s+")  # any Unicode whitespace run: tab, newline, NBSP, U+2028, ideographic space, ...


def normalize_copy(text):
    """`text` as the copy means it: whitespace (tab, newline, NBSP, ...) becomes a space, other control and format
    characters (Unicode categories Cc, Cf) are removed, runs of spaces collapse to one, the ends are stripped, NFC.
    A visible character is never removed: one the font lacks must still stop the text layer, named."""
    text = "" if text is None else str(text)
    # whitespace first (tab, newline and NBSP are Cc/Zs and must part words), then the invisible rest, then NFC: a
    # removed format character between a letter and its combining mark must not keep them from composing
    text = _SPACES.sub(" ", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _INVISIBLE)
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()
