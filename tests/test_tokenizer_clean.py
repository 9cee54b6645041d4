"""The shortcuts in text cleaning and word splitting give exactly what OpenAI's full procedure gives."""

from __future__ import annotations

import html
import string
import sys
import unicodedata

import ftfy
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Regex, pre_tokenizers

from clipforge.text import bpe
from clipforge.text.clean import clean_text
from clipforge.text.tokenizer import _ASCII_WORDS, _WORDS, openai_tokenizer


def openai_clean(text: str) -> str:
    """OpenAI's cleanup, every step always applied."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


FAST_ALPHABET = "\t\n" + "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "&")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=FAST_ALPHABET, max_size=80))
def test_fast_path_texts_are_unchanged_by_ftfy_and_unescape(text):
    assert ftfy.fix_text(text) == text
    assert html.unescape(text) == text
    assert clean_text(text) == openai_clean(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable + "&;#<>|\x00\x1b\x1c\x7f\x85\u00a0\u3000éſ", max_size=80))
def test_clean_equals_openai_clean(text):
    assert clean_text(text) == openai_clean(text)


@pytest.mark.parametrize(
    "text",
    [
        "x &amp; y",
        "e&#769;",
        "a\r\nb",
        "a\x1cb",
        "\x1b[31mred",
        "ΟΔΟΣ",
        "İstanbul",
        "ﬁ",
        "Ã©",
        "&#28;x",
        "<b>&amp;</b>",
    ],
)
def test_clean_on_texts_that_need_fixing(text):
    assert clean_text(text) == openai_clean(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable + "<|>'", max_size=80))
def test_ascii_word_pattern_equals_openai_pattern(text):
    cleaned = clean_text(text)
    assert _ASCII_WORDS.findall(cleaned) == _WORDS.findall(cleaned)


def test_backend_pattern_splits_like_openai_on_every_assigned_bmp_character():
    # tokenizers.json users and training split words with `tokenizers`' own pattern; it must agree with
    # OpenAI's on every character this Python's Unicode tables assign (newer letters may differ) that can
    # appear in lowercased text.
    split = pre_tokenizers.Split(Regex(bpe.BACKEND_WORD_PATTERN), behavior="removed", invert=True)
    chars = [chr(c) for c in range(0x20, 0x10000) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    chars = [c for c in chars if c.lower() == c]
    for probe in ("a{}", "{}{}", "!{}", "1{}", "'{}"):
        # U+3000 (ideographic space) separates the probes, so each is split on its own.
        text = "\u3000".join(probe.format(c, c) for c in chars)
        ours = [word for word, _ in split.pre_tokenize_str(text)]
        assert ours == _WORDS.findall(text), probe
    assert sys.maxunicode > 0xFFFF


def test_standalone_backend_json_matches_on_cleaned_texts():
    # The saved tokenizer.json, used by itself on cleaned text, gives the same ids.
    from tokenizers import Tokenizer as Backend

    tok = openai_tokenizer()
    backend = Backend.from_str(tok.to_json())
    texts = ["a photo of a cat.", "don't stop", "café naïve 🐱 猫", "'ſ", "ά\u0345ι", "3.14 &amp; <b>"]
    for text in texts:
        cleaned = clean_text(text)
        assert backend.encode(cleaned, add_special_tokens=False).ids == tok.encode(text), text
