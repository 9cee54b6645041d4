"""Text cleanup applied before byte-level BPE, character for character as OpenAI CLIP does it.

OpenAI's order is: ``ftfy.fix_text`` (mojibake, ligatures, full-width forms, control characters, NFC),
``html.unescape`` twice (captions scraped from the web are often double-escaped: ``&amp;amp;``), collapse
runs of whitespace to one space, strip, lowercase. Lowercasing is done here in Python rather than by a
``tokenizers`` normalizer because Python's ``str.lower`` is what OpenAI used, and Rust's per-character
lowercasing differs on context-dependent cases such as the Greek final sigma.
"""

from __future__ import annotations

import html
import re
import string

import ftfy

# Texts made only of tab, newline and printable ASCII other than "&" come out of ftfy.fix_text and
# html.unescape unchanged: every ftfy fixer acts on non-ASCII characters, control characters, "\r" or
# HTML entities (which need "&"). Skipping both for such texts is the tokenizer's main speed-up, since
# ftfy costs ~13 us a caption; tests/test_tokenizer_clean.py checks the equivalence.
_MAY_NEED_FIXING = re.compile(r"[^\t\n\x20-\x25\x27-\x7e]")


def clean_text(text: str) -> str:
    """Normalize one text the way OpenAI CLIP does before splitting it into words.

    Args:
        text: raw caption or prompt.

    Returns:
        The fixed, HTML-unescaped, whitespace-collapsed, stripped and lowercased text.
    """
    if _MAY_NEED_FIXING.search(text) is not None:
        text = ftfy.fix_text(text)
        text = html.unescape(html.unescape(text))
    # str.split() splits on the same characters as OpenAI's regex \s+ except U+001C..U+001F, which
    # ftfy has already removed (and html.unescape never produces).
    return " ".join(text.split()).lower()


_PUNCTUATION = str.maketrans("", "", string.punctuation)


def open_clip_clean(text: str, mode: str) -> str:
    """The cleaning OpenCLIP's HFTokenizer applies before a Hugging Face tokenizer (open_clip/tokenizer.py).

    Every mode but "none" first repairs the text (``ftfy.fix_text``, ``html.unescape`` twice, strip); then
    "whitespace" collapses runs of whitespace, "lower" also lower-cases, and "canonicalize" (big_vision's, for
    SigLIP) turns "_" into spaces, removes ASCII punctuation, lower-cases and collapses whitespace.

    Args:
        text: raw caption or prompt.
        mode: "none", "whitespace", "lower" or "canonicalize".
    """
    if mode == "none":
        return text
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    if mode == "canonicalize":
        text = text.replace("_", " ").translate(_PUNCTUATION).lower()
    elif mode == "lower":
        text = text.lower()
    return " ".join(text.split()).strip()
