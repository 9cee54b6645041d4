"""Learn BPE merges from word counts, deterministically.

`tokenizers`' BpeTrainer breaks ties between equally frequent pairs by hash-map order, which changes from
one process to the next, so the same corpus gave different vocabularies on different runs (a checkpoint's
golden loss curve could not be reproduced). This learner breaks ties by the pair itself, so the merges
depend on the corpus alone. Encoding with the learned merges is still done by `tokenizers`' BPE model.

The algorithm is Sennrich et al. (2016), "Neural Machine Translation of Rare Words with Subword Units",
Algorithm 1, on OpenAI CLIP's symbols: each word is a sequence of byte symbols whose last one carries "</w>".
Pair counts are updated incrementally, and a heap with lazily discarded stale entries gives the next pair.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Mapping

Pair = tuple[str, str]


def learn_merges(
    word_counts: Mapping[str, int],
    num_merges: int,
    min_frequency: int = 2,
    on_merge: Callable[[int], None] | None = None,
) -> list[Pair]:
    """Up to ``num_merges`` merges, most frequent pair first; ties go to the smallest pair (string order).

    Args:
        word_counts: word (already in byte symbols) -> occurrences in the corpus.
        num_merges: how many merges to learn at most.
        min_frequency: stop when the most frequent remaining pair occurs fewer times than this.
        on_merge: called with the number of merges learned so far, for progress display.

    Returns:
        Merges in rank order. A pair whose merged string is already a token (the same string reached
        through another split) is never merged, so every merge adds exactly one new token.
    """
    words = [[*w[:-1], w[-1] + "</w>"] for w in sorted(word_counts) if w]
    counts = [word_counts[w] for w in sorted(word_counts) if w]
    pair_count: dict[Pair, int] = defaultdict(int)
    pair_words: dict[Pair, set[int]] = defaultdict(set)
    tokens: set[str] = set()
    for i, (symbols, count) in enumerate(zip(words, counts, strict=True)):
        tokens.update(symbols)
        for pair in zip(symbols[:-1], symbols[1:], strict=True):
            pair_count[pair] += count
            pair_words[pair].add(i)
    heap = [(-c, pair) for pair, c in pair_count.items()]
    heapq.heapify(heap)
    merges: list[Pair] = []
    while heap and len(merges) < num_merges:
        neg_count, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg_count:
            continue  # stale: the count changed after this entry was pushed
        if -neg_count < min_frequency:
            break
        merged = pair[0] + pair[1]
        if merged in tokens:
            del pair_count[pair]  # never merge it (see Returns)
            continue
        tokens.add(merged)
        merges.append(pair)
        for pushed in _apply_merge(pair, words, counts, pair_count, pair_words):
            heapq.heappush(heap, (-pair_count[pushed], pushed))
        if on_merge is not None:
            on_merge(len(merges))
    return merges


def _apply_merge(
    pair: Pair,
    words: list[list[str]],
    counts: list[int],
    pair_count: dict[Pair, int],
    pair_words: dict[Pair, set[int]],
) -> set[Pair]:
    """Merge ``pair`` in every word holding it, updating the pair statistics; return the pairs whose count
    changed and is still positive (they need a fresh heap entry)."""
    first, second = pair
    changed: set[Pair] = set()
    for i in sorted(pair_words.pop(pair, ())):
        old, count = words[i], counts[i]
        new: list[str] = []
        j = 0
        while j < len(old):  # left to right, as the encoder applies a merge
            if j + 1 < len(old) and old[j] == first and old[j + 1] == second:
                new.append(first + second)
                j += 2
            else:
                new.append(old[j])
                j += 1
        words[i] = new
        old_pairs = list(zip(old[:-1], old[1:], strict=True))
        new_pairs = list(zip(new[:-1], new[1:], strict=True))
        for p in old_pairs:
            pair_count[p] -= count
        for p in new_pairs:
            pair_count[p] += count
            pair_words[p].add(i)
        changed.update(old_pairs, new_pairs)
        for p in set(old_pairs) - set(new_pairs):
            pair_words[p].discard(i)
    pair_count.pop(pair, None)
    changed.discard(pair)
    return {p for p in changed if pair_count.get(p, 0) > 0}
