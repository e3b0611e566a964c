"""
The "not a medicine" disclaimer of supplement ads ("Sản phẩm này không phải là thuốc và không có tác dụng thay thế
thuốc chữa bệnh"; in 426 of the 1362 real training rows: 423 times in moreInfo, 4 in description), found by one rule
for every stage: the prompt fitter drops it (legal text, nothing an image model can draw), the text layer sets it in
small type at the bottom of the banner.

The rule: the Vietnamese wordings seen in the data and the usual English translations, matched case-insensitively
after the one copy rule (core/copy_text: invisible characters out, NFC, collapsed whitespace; the data has decomposed
letters, stray line breaks and control characters).
"""
import re

from core.copy_text import normalize_copy

PATTERNS = (
    r"kh[oô]ng (?:ph[aả]i l[aà]|ph[aả]i|l[aà]) thu[oố]c", r"kh[oô]ng c[oó] t[aá]c d[uụ]ng thay th[eế]",
    r"thay th[eế] thu[oố]c ch[uữ]a b[eệ]nh",
    r"\bnot (?:a |an )?(?:medicines?|medications?|drugs?|medicinal products?|pharmaceuticals?)\b",
    r"\b(?:does not|do not|doesn't|cannot|can not|not intended to|no effect of) replac\w* (?:\w+ ){0,3}?"
    r"(?:medicines?|medications?|drugs?|treatments?)\b",
    r"\bnot (?:a )?substitute for\b",
)
PATTERN = re.compile("|".join(PATTERNS), re.IGNORECASE)


def is_disclaimer(text):
    """`text` says the product is not a medicine (anywhere in it)."""
    return bool(PATTERN.search(normalize_copy(text or "")))


def strip_disclaimer(text):
    """`text` without its disclaimer sentence(s)."""
    sentences = re.split(r"(?<=[.;!?])\s+|\n+", text or "")
    return " ".join(s for s in sentences if not is_disclaimer(s)).strip()
