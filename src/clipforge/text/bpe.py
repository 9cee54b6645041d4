"""Build Hugging Face ``tokenizers`` objects that split and merge exactly like OpenAI CLIP's BPE.

The vocabulary layout (shared by the bundled OpenAI vocabulary and by vocabularies clipforge trains):
  ids 0..255     the 256 byte symbols, in OpenAI's byte -> character order
  ids 256..511   the same symbols with the end-of-word suffix "</w>"
  then           one token per merge, in merge-rank order
  last two       <|startoftext|> (vocab_size - 2) and <|endoftext|> (vocab_size - 1)
The text model reads its features at argmax(token_ids), so end-of-text must be the highest id.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Mapping
from pathlib import Path

from rich.progress import Progress
from tokenizers import Regex, decoders, pre_tokenizers
from tokenizers import Tokenizer as Backend
from tokenizers.models import BPE

from clipforge.text.bpe_train import learn_merges

log = logging.getLogger(__name__)

SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
END_OF_WORD = "</w>"
# OpenAI's merge file holds more merges than its 49,408-token vocabulary uses: 49,408 - 512 byte symbols
# - 2 special tokens = 48,894 merges, read from the lines after the header.
OPENAI_NUM_MERGES = 48_894
BASE_SYMBOLS = 512  # 256 byte symbols + the same with END_OF_WORD
NUM_SPECIAL = 2

# OpenAI CLIP's word pattern, which it applies with IGNORECASE after lowercasing: the two special tokens,
# English contraction suffixes, runs of letters, single digits, runs of other non-space characters.
# Whitespace between matches is dropped.
WORD_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
# The same pattern for `tokenizers` (Oniguruma), without a case-insensitive flag, which on lowercased
# text matters only for two characters, spelled out here: U+017F (long s) case-folds to "s", so "'\u017f"
# is a contraction; U+0345 (combining ypogegrammeni) case-folds to a Greek letter, so under IGNORECASE
# neither [\p{L}] nor [^\s\p{L}\p{N}] takes it and OpenAI drops it like whitespace. Scanning every code
# point finds no other difference, except ~17k characters that only the newest Unicode assigns (the regex
# module knows them as letters, `tokenizers`' older Unicode tables as unassigned symbols).
BACKEND_WORD_PATTERN = (
    r"""<\|[s\x{17f}]tartoftext\|>|<\|endoftext\|>|'[s\x{17f}]|'t|'re|'ve|'m|'ll|'d"""
    r"""|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}\x{345}]+"""
)


def byte_symbols() -> list[str]:
    """The 256 byte symbols in OpenAI's vocabulary order (the same byte -> character map as ByteLevel's).

    Bytes that are visible, non-space Latin-1 characters stand for themselves and come first, in byte
    order; the other 68 bytes (controls, space, no-break space, soft hyphen) follow, in byte order,
    as the characters U+0100 onwards, so that no symbol is whitespace or a control character.
    """
    return [symbol for _, symbol in _byte_symbol_pairs()]


def latin1_to_symbols() -> dict[int, str]:
    """A ``str.translate`` table taking a word's UTF-8 bytes, read as Latin-1, to byte symbols.

    ``word.encode("utf-8").decode("latin-1").translate(table)`` is the byte-level form of ``word``.
    """
    return dict(_byte_symbol_pairs())


def _byte_symbol_pairs() -> list[tuple[int, str]]:
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    hidden = [b for b in range(256) if b not in visible]
    return [(b, chr(b)) for b in visible] + [(b, chr(256 + n)) for n, b in enumerate(hidden)]


def base_vocab() -> list[str]:
    """The 512 base tokens: byte symbols, then byte symbols ending a word."""
    symbols = byte_symbols()
    return symbols + [s + END_OF_WORD for s in symbols]


def vocab_from_merges(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id for the standard layout (module docstring) given the merges in rank order."""
    tokens = base_vocab() + [a + b for a, b in merges] + [SOT, EOT]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError("duplicate tokens in the BPE vocabulary: a merge repeats a base symbol or another merge")
    return vocab


def read_openai_merges(path: Path) -> list[tuple[str, str]]:
    """Read the merges OpenAI CLIP's vocabulary uses from ``bpe_simple_vocab_16e6.txt.gz``.

    Args:
        path: the gzip-compressed merge list (line 0 is a version header).
    """
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 1 + OPENAI_NUM_MERGES]]
    bad = [i for i, m in enumerate(merges) if len(m) != 2]
    if len(merges) != OPENAI_NUM_MERGES or bad:
        raise ValueError(f"{path}: expected {OPENAI_NUM_MERGES} merge lines of two symbols (bad lines: {bad[:5]})")
    return merges  # type: ignore[return-value]


def pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Split into OpenAI's words, then map each word's UTF-8 bytes to byte symbols."""
    return pre_tokenizers.Sequence(
        [
            # invert=True: the pattern matches the words to keep; what lies between (spaces) is removed.
            pre_tokenizers.Split(Regex(BACKEND_WORD_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def make_backend(merges: list[tuple[str, str]]) -> Backend:
    """A ``tokenizers.Tokenizer`` for the standard layout; text must already be cleaned (clean.clean_text).

    clipforge's Tokenizer uses its model and decoder; the pre-tokenizer serves training and anyone using
    the saved JSON on its own.

    Args:
        merges: BPE merges in rank order.
    """
    model = BPE(
        vocab=vocab_from_merges(merges),
        merges=merges,
        end_of_word_suffix=END_OF_WORD,
        continuing_subword_prefix="",
        # Every byte symbol is in the vocabulary, so this never fires; it only keeps the model total.
        unk_token=EOT,
    )
    backend = Backend(model)
    backend.pre_tokenizer = pre_tokenizer()
    backend.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace(END_OF_WORD, " ")])
    backend.add_special_tokens([SOT, EOT])
    return backend


def train_merges(
    word_counts: Mapping[str, int], num_merges: int, min_frequency: int = 2, show_progress: bool = False
) -> list[tuple[str, str]]:
    """Learn up to ``num_merges`` BPE merges from the counts of OpenAI-style words of a cleaned corpus.

    Args:
        word_counts: word (as split from cleaned text) -> occurrences.
        num_merges: how many merges to keep (the most frequent first).
        min_frequency: a pair seen fewer times than this is never merged.
        show_progress: show a progress bar.

    Returns:
        The merges in rank order; fewer than ``num_merges`` when the corpus runs out of pairs.
    """
    table = latin1_to_symbols()
    symbol_counts = {w.encode("utf-8").decode("latin-1").translate(table): c for w, c in word_counts.items()}
    if show_progress:
        with Progress(transient=True) as progress:
            task = progress.add_task("learning BPE merges", total=num_merges)
            merges = learn_merges(
                symbol_counts, num_merges, min_frequency, lambda n: progress.update(task, completed=n)
            )
    else:
        merges = learn_merges(symbol_counts, num_merges, min_frequency)
    if len(merges) < num_merges:
        log.warning("the training corpus supports only %d of the %d merges asked for", len(merges), num_merges)
    return merges
