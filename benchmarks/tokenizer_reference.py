"""A plain-Python implementation of OpenAI CLIP's BPE tokenizer, and a generator of varied test texts.

This is the reference that clipforge's tokenizer (Hugging Face ``tokenizers`` underneath) is checked and
timed against. It follows OpenAI's published algorithm step by step and shares no code with clipforge:
clean the text, split it into words with OpenAI's pattern, map each word's UTF-8 bytes to printable
symbols, then repeatedly merge the adjacent pair of symbols with the best (lowest) merge rank.
"""

from __future__ import annotations

import gzip
import html
import random
import unicodedata
from pathlib import Path

import ftfy
import regex

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
WORD_END = "</w>"
OPENAI_NUM_MERGES = 49408 - 512 - 2
PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


def _byte_to_char() -> dict[int, str]:
    """Printable stand-ins for bytes: visible Latin-1 bytes keep their character, others get U+0100+n."""
    keep = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(0x100 + extra)
            extra += 1
    return table


class ReferenceBPE:
    """OpenAI CLIP's tokenizer in plain Python.

    Args:
        merges: BPE merges in rank order (``from_file`` reads OpenAI's).
    """

    @classmethod
    def from_file(cls, merges_path: str | Path) -> ReferenceBPE:
        """OpenAI's vocabulary from ``bpe_simple_vocab_16e6.txt.gz`` (line 0 is a header)."""
        with gzip.open(merges_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")[1 : 1 + OPENAI_NUM_MERGES]
        return cls([tuple(line.split()) for line in lines])

    def __init__(self, merges: list[tuple[str, str]]) -> None:
        self.byte_char = _byte_to_char()
        self.char_byte = {c: b for b, c in self.byte_char.items()}
        # Vocabulary order: byte symbols sorted as OpenAI lists them (visible ones first, in byte order,
        # then the stand-ins), the same followed by WORD_END, every merge's result, then the specials.
        symbols = sorted(self.byte_char.values(), key=lambda c: (ord(c) >= 0x100, ord(c)))
        tokens = symbols + [s + WORD_END for s in symbols] + ["".join(m) for m in merges] + [SOT, EOT]
        self.token_id = {t: i for i, t in enumerate(tokens)}
        self.id_token = tokens
        self.rank = {tuple(m): i for i, m in enumerate(merges)}
        self.no_merge = len(merges)  # rank of pairs that are not merges
        self.sot_id, self.eot_id = self.token_id[SOT], self.token_id[EOT]
        self.cache: dict[str, list[int]] = {SOT: [self.sot_id], EOT: [self.eot_id]}

    @staticmethod
    def clean(text: str) -> str:
        """ftfy, HTML-unescape twice, collapse whitespace, strip, lowercase (OpenAI's order)."""
        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return regex.sub(r"\s+", " ", text).strip().lower()

    def word_ids(self, word: str) -> list[int]:
        """Ids of one word (already mapped to byte symbols), merging best-ranked pairs first."""
        if word in self.cache:
            return self.cache[word]
        parts = list(word[:-1]) + [word[-1] + WORD_END]
        while len(parts) > 1:
            ranked = [
                (self.rank.get(pair, self.no_merge), i, pair)
                for i, pair in enumerate(zip(parts[:-1], parts[1:], strict=True))
            ]
            best_rank, _, best = min(ranked)
            if best_rank == self.no_merge:
                break
            merged, i = [], 0
            while i < len(parts):  # merge every occurrence, scanning left to right
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.token_id[p] for p in parts]
        self.cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Ids of a text's words, without start/end-of-text."""
        out: list[int] = []
        for word in PATTERN.findall(self.clean(text)):
            if word in self.cache:  # the special tokens, and words seen before
                out.extend(self.cache[word])
            else:
                out.extend(self.word_ids("".join(self.byte_char[b] for b in word.encode("utf-8"))))
        return out

    def __call__(self, texts: list[str], context_length: int = 77) -> list[list[int]]:
        """Padded id rows; a truncated row ends with end-of-text."""
        rows = []
        for text in texts:
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > context_length:
                ids = ids[:context_length]
                ids[-1] = self.eot_id
            rows.append(ids + [0] * (context_length - len(ids)))
        return rows

    def decode(self, ids: list[int]) -> str:
        """Text of ids (special tokens dropped), each word followed by a space."""
        symbols = "".join(self.id_token[i] for i in ids if i not in (self.sot_id, self.eot_id))
        data = bytes(self.char_byte[c] for c in symbols)
        return data.decode("utf-8", errors="replace").replace(WORD_END, " ")


# ---------------------------------------------------------------------------------------------------
# Varied texts: captions, contractions, numbers, accents, scripts, emoji, HTML entities, mojibake,
# control characters, special-token look-alikes, whitespace-only and very long texts.

_WORDS = str.split(
    "a an the photo picture drawing sketch painting of cat dog bird car tree house mountain river city street "
    "red blue green small big old young happy sad running sitting flying on in under next to with and or "
    "beautiful night day snow rain sunset beach forest portrait close-up view"
)
# fmt: off
_FRAGMENTS = [
    "don't", "it's", "we're", "they've", "I'm", "you'll", "he'd", "DON'T", "IT'S", "O'Neill", "rock 'n' roll",
    "3.14", "1,000,000", "2024-11-22", "#42", "$9.99", "50%", "10x", "1st", "007", "½", "²", "Ⅻ", "٣", "१२",
    "!!!", "?!", "...", "—", "(a)", "[b]", "{c}", "“quoted”", "‘single’", "«guillemets»", "a/b", "c++", "@user",
    "café", "naïve", "résumé", "Ångström", "Œuvre", "straße", "STRASSE", "İstanbul", "ΟΔΟΣ", "Ὀδυσσεύς", "ᾳ",
    "Москва", "ПРИВЕТ", "مرحبا", "שלום", "नमस्ते", "สวัสดี", "Việt Nam", "ǅemal", "ﬁne", "ﬂower", "ＬＯＵＤ",
    "猫の写真", "一只猫", "고양이", "東京タワー", "ｶﾀｶﾅ",
    "🐱", "👍🏽", "👨‍👩‍👧", "🇯🇵", "❤️", "🏳️‍🌈", "☕", "🙂🙂🙂",
    "&amp;", "&lt;b&gt;bold&lt;/b&gt;", "&amp;amp;", "&#39;", "&#x2019;", "&nbsp;", "&copy;", "&#128512;",
    "e&#769;", "&notanentity;", "AT&T", "&", "&&", "<b>x</b> &amp; y", "&#28;", "&#0;",
    "âœ” No problems", "Ã©tÃ©", "â€œmojibakeâ€\x9d", "\ufeffbom",
    "", " ", "\t", "\n", "\r\n", "\u3000", "\u00a0", "\u2028", "\u200b", "\x00", "\x1b[31mred\x1b[0m", "\x7f",
    "\x1c", "\x85",
    "<|endoftext|>", "<|startoftext|>", "x<<|endoftext|>", "<|ENDOFTEXT|>", "a<|endoftext|>b", "<|ſtartoftext|>",
    "'ſ", "\u0345", "ά\u0345",
]
# fmt: on


def _random_unicode(rng: random.Random, n: int) -> str:
    """n random assigned, non-surrogate code points (mostly BMP), as messy as real scraped text gets."""
    out = []
    while len(out) < n:
        cp = rng.randrange(0x20, 0x3000) if rng.random() < 0.7 else rng.randrange(0x3000, 0x1FAFF)
        ch = chr(cp)
        if unicodedata.category(ch) not in ("Cn", "Cs", "Co"):
            out.append(ch)
    return "".join(out)


def make_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` deterministic, varied texts (every fragment above appears while n >= 200).

    Args:
        n: how many texts.
        seed: random seed.
    """
    rng = random.Random(seed)
    texts = list(_FRAGMENTS[:n])
    while len(texts) < n:
        kind = rng.random()
        if kind < 0.35:  # caption-like
            words = [rng.choice(_WORDS) for _ in range(rng.randint(2, 14))]
            words = [w.capitalize() if rng.random() < 0.2 else w for w in words]
            text = " ".join(words) + rng.choice([".", "", "!", " ."])
        elif kind < 0.75:  # captions mixed with fragments
            parts = [rng.choice(_WORDS if rng.random() < 0.5 else _FRAGMENTS) for _ in range(rng.randint(1, 8))]
            text = "".join(p + rng.choice([" ", " ", "", "  ", ",", "\n"]) for p in parts)
        elif kind < 0.9:  # random unicode
            text = _random_unicode(rng, rng.randint(1, 30))
        elif kind < 0.97:  # random printable ASCII, entities and all
            text = "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randint(1, 60)))
        else:  # long: far past 77 tokens
            text = " ".join(rng.choice(_WORDS + _FRAGMENTS) for _ in range(rng.randint(80, 300)))
        texts.append(text)
    return texts
