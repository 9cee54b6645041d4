"""build_loader: disjoint coverage across ranks and workers, exact resume, random captions, skip counting."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch
from data_helpers import decode_tokens, make_jsonl, toy_tokenizer, write_image

from clipforge.data.config import DataConfig, PreprocessConfig
from clipforge.data.datasets import rank_batch_ranges
from clipforge.data.loader import build_loader
from clipforge.data.shards import write_shards
from clipforge.data.sources import open_source
from clipforge.dist.env import World

PP = PreprocessConfig(image_size=8)


def _load(spec, *, rank=0, world=1, workers=0, batch=4, train=True, epoch=0, seed=3, skip=0, **cfg_kw):
    cfg = DataConfig(train=str(spec), workers=workers, caption_column="captions", **cfg_kw)
    return build_loader(
        cfg,
        tokenizer=toy_tokenizer,
        preprocess=PP,
        world=World(rank=rank, world_size=world),
        batch_size=batch,
        train=train,
        epoch=epoch,
        seed=seed,
        skip_batches=skip,
    )


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return make_jsonl(tmp_path_factory.mktemp("pairs"), 37, captions_per_image=3)


@pytest.fixture(scope="module")
def shards(tmp_path_factory, table):
    out = tmp_path_factory.mktemp("shards")
    # 37 samples in shards of 5: seven full shards and one of 2, so workers get unequal streams.
    write_shards(
        open_source(table, caption_field="captions"), out, shard_size=5, image_format="png", progress=False
    )
    return out


@pytest.mark.parametrize("source", ["table", "shards"])
def test_distributed_sharding_2_ranks_2_workers_covers_each_sample_once(source, table, shards):
    spec = table if source == "table" else shards
    seen: list[int] = []
    lengths = []
    for rank in range(2):
        loader = _load(spec, rank=rank, world=2, workers=2, batch=4)
        batches = list(loader)
        lengths.append((len(loader), len(batches)))
        seen += [i for b in batches for i in b.indices.tolist()]
        assert loader.stats.counts == {}
    assert sorted(seen) == list(range(37)), Counter(seen).most_common(3)
    assert all(n == m for n, m in lengths)
    if source == "table":
        assert lengths[0] == lengths[1]  # equal steps on every rank, as DDP needs


def test_rank_ranges_last_partial_batch():
    # 37 = 4 full global batches of 8 + 5 left: ranks get 3 and 2 of them; nothing dropped or repeated.
    r0, t0 = rank_batch_ranges(37, 0, 2, 4, train=True)
    r1, t1 = rank_batch_ranges(37, 1, 2, 4, train=True)
    assert [len(r) for r in r0] == [4, 4, 4, 4, 3] and [len(r) for r in r1] == [4, 4, 4, 4, 2]
    assert sorted(p for r in r0 + r1 for p in r) == list(range(37)) and t0 == t1 == 0
    # 33 leaves 1 sample for 2 ranks: in training it sits out the epoch (counted), in eval rank 0 reads it.
    r0, t0 = rank_batch_ranges(33, 0, 2, 4, train=True)
    r1, t1 = rank_batch_ranges(33, 1, 2, 4, train=True)
    assert len(r0) == len(r1) == 4 and t0 + t1 == 1
    r0, _ = rank_batch_ranges(33, 0, 2, 4, train=False)
    assert len(r0) == 5 and list(r0[-1]) == [32]


def test_tail_is_counted_in_stats(tmp_path):
    spec = make_jsonl(tmp_path, 9)
    stats = [_load(spec, rank=r, world=2, batch=4) for r in range(2)]
    seen = [i for loader in stats for b in loader for i in b.indices.tolist()]
    assert len(seen) == 8 and len(set(seen)) == 8
    assert sum(loader.stats.counts.get("tail", 0) for loader in stats) == 1


def _flat(batches):
    return [(b.indices.tolist(), b.pixels, b.token_ids) for b in batches]


@pytest.mark.parametrize("source", ["table", "shards"])
@pytest.mark.parametrize("skip", [1, 6, 12])
def test_resume_skip_batches_gives_exactly_the_remaining_batches(source, skip, table, shards):
    spec = table if source == "table" else shards
    kw = dict(workers=2, batch=3, epoch=2, random_resized_crop=True, crop_scale=(0.3, 1.0))
    full = _flat(_load(spec, **kw))
    resumed_loader = _load(spec, skip=skip, **kw)
    resumed = _flat(resumed_loader)
    assert len(resumed_loader) == len(full) - skip == len(resumed)
    for (ia, pa, ta), (ib, pb, tb) in zip(full[skip:], resumed, strict=True):
        assert ia == ib
        assert torch.equal(pa, pb) and torch.equal(ta, tb)


def test_epoch_order_is_a_function_of_seed_and_epoch(table):
    def order(**kw):
        return [i for b in _load(table, batch=8, **kw) for i in b.indices.tolist()]

    assert order(epoch=1) == order(epoch=1)
    assert order(epoch=1) != order(epoch=2)
    assert order(epoch=1, seed=4) != order(epoch=1)
    assert order(train=False) == list(range(37))


def test_random_caption_among_several(table):
    picked: dict[int, set[str]] = {}
    for epoch in range(6):
        for b in _load(table, batch=16, epoch=epoch):
            for i, ids in zip(b.indices.tolist(), b.token_ids, strict=True):
                picked.setdefault(i, set()).add(decode_tokens(ids))
    assert all(c.startswith(f"c{i}-") for i, caps in picked.items() for c in caps)
    assert sum(len(c) > 1 for c in picked.values()) > 30  # most images showed more than one caption
    first = [decode_tokens(t) for b in _load(table, batch=16, train=False) for t in b.token_ids]
    assert all(c.endswith("-0") for c in first)


def test_bad_samples_are_skipped_and_counted(tmp_path, caplog):
    root = tmp_path / "folder"
    for i in range(5):
        write_image(root / f"ok{i}.png", i)
        (root / f"ok{i}.txt").write_text(f"good {i}\nsecond line {i}\n")
    (root / "empty.png").write_bytes(b"")
    (root / "empty.txt").write_text("zero bytes")
    (root / "text.png").write_text("not an image")
    (root / "text.txt").write_text("a text file")
    write_image(root / "nocap.png", 9)
    (root / "nocap.txt").write_text("  \n\n")
    write_image(root / "nosidecar.png", 10)
    raw = (root / "ok0.png").read_bytes()
    (root / "trunc.png").write_bytes(raw[: len(raw) // 2])
    (root / "trunc.txt").write_text("truncated")
    with caplog.at_level(logging.INFO, logger="clipforge.data"):
        loader = _load(root, batch=4)
        batches = list(loader)
    assert sum(b.indices.numel() for b in batches) == 5
    assert loader.stats.counts == {"corrupt": 3, "empty_caption": 2}
    messages = [r.getMessage() for r in caplog.records]
    assert any("skipped: 5 (corrupt: 3; empty_caption: 2)" in m for m in messages)
    # One warning per skipped item, empty captions included (what docs/data.md promises).
    assert sum("no caption" in m for m in messages) == 2 and any("nosidecar.png: no caption" in m for m in messages)


def test_missing_files_are_counted(tmp_path):
    spec = make_jsonl(tmp_path, 6)
    (tmp_path / "images" / "0002.png").unlink()
    loader = _load(spec, batch=4, workers=2)
    assert sum(b.indices.numel() for b in loader) == 5
    assert loader.stats.counts == {"missing": 1}
