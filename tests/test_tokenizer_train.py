"""Trained vocabularies: OpenAI's layout and algorithm with new merges, end-of-text last, saved and reloaded."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizer_helpers import load_reference

from clipforge.checkpoint import TOKENIZER_FILE
from clipforge.errors import UserError
from clipforge.text.bpe_train import learn_merges
from clipforge.text.config import TokenizerConfig
from clipforge.text.tokenizer import build_tokenizer, train_tokenizer

VOCAB = 1000




@pytest.fixture(scope="module")
def corpus():
    return load_reference().make_texts(2000, seed=7)


@pytest.fixture(scope="module")
def trained(corpus):
    return train_tokenizer(corpus, VOCAB, context_length=32)


def test_end_of_text_is_the_highest_id(trained, corpus):
    assert (trained.vocab_size, trained.sot_id, trained.eot_id) == (VOCAB, VOCAB - 2, VOCAB - 1)
    # (A text spelling "<|endoftext|>" has that token inside, as with OpenAI's vocabulary; left out.)
    texts = [t for t in corpus if "<|" not in t][:300]
    ids = trained(texts)
    assert ids.shape == (300, 32)
    assert int(ids.max()) == VOCAB - 1
    # The text model pools at argmax(ids): that must be the end-of-text position of every row.
    lengths = torch.tensor([min(len(trained.encode(t)), 30) for t in texts])
    assert torch.equal(ids.argmax(dim=-1), lengths + 1)
    assert torch.equal(ids[torch.arange(300), lengths + 1], torch.full((300,), VOCAB - 1))


def test_save_and_reload_give_identical_ids(trained, corpus, tmp_path):
    (tmp_path / TOKENIZER_FILE).write_text(trained.to_json(), encoding="utf-8")
    cfg = TokenizerConfig(kind="file", context_length=32, vocab_size=trained.vocab_size)
    loaded = build_tokenizer(cfg, tmp_path)
    assert torch.equal(loaded(corpus), trained(corpus))
    assert loaded.to_json() == trained.to_json()


def test_trained_merges_follow_openai_algorithm(trained, corpus):
    # The plain-Python reference, given the learned merges, reproduces every id: same layout, same
    # word split, same merge order. Texts it never saw (other seed) included.
    merges = [tuple(m) for m in json.loads(trained.to_json())["model"]["merges"]]
    assert len(merges) == VOCAB - 514
    reference = load_reference().ReferenceBPE(merges)
    texts = corpus[:500] + load_reference().make_texts(500, seed=99)
    for text in texts:
        ids = reference.encode(text)
        assert trained.encode(text) == ids, repr(text)
        assert trained.decode(ids) == reference.decode(ids).strip(), repr(text)
    # Merges learned something: common caption words are single tokens.
    assert len(trained.encode("photo")) == 1


def test_training_is_deterministic(trained, corpus):
    assert train_tokenizer(corpus, VOCAB, context_length=32).to_json() == trained.to_json()


def test_small_corpus_gives_smaller_vocabulary_with_warning(caplog):
    with caplog.at_level(logging.WARNING):
        tok = train_tokenizer(["a cat", "a cat", "a dog"], 5000)
    assert "supports only" in caplog.text
    assert 514 < tok.vocab_size < 5000
    assert tok.eot_id == tok.vocab_size - 1 and tok.sot_id == tok.vocab_size - 2
    assert tok.decode(tok("A cat and an émoji 🐱")[0]) == "a cat and an émoji 🐱"


def test_too_small_vocab_size_is_rejected():
    with pytest.raises(UserError, match="too small"):
        train_tokenizer(["a cat"], 514)


def test_learn_merges_on_the_textbook_example():
    # Sennrich et al. (2016)'s corpus; counted by hand: e+s and s+t</w> both occur 9 times (tie: the
    # smaller pair first), then es+t</w> 9, l+o 7, then e+w and n+e 6 each.
    merges = learn_merges({"low": 5, "lower": 2, "newest": 6, "widest": 3}, num_merges=4, min_frequency=1)
    assert merges == [("e", "s"), ("es", "t</w>"), ("l", "o"), ("e", "w")]
    assert learn_merges({"aaaa": 3}, 10, 1) == [("a", "a"), ("a", "a</w>"), ("aa", "aa</w>")]
    assert learn_merges({"ab": 1, "cd": 1}, 10, min_frequency=2) == []


def test_training_is_identical_in_another_process(trained, corpus, tmp_path):
    # Hash seeds differ between processes; the learned vocabulary must not.
    (tmp_path / "corpus.json").write_text(json.dumps(corpus), encoding="utf-8")
    script = (
        "import json, sys; from clipforge.text.tokenizer import train_tokenizer; "
        "texts = json.load(open(sys.argv[1], encoding='utf-8')); "
        f"sys.stdout.write(train_tokenizer(texts, {VOCAB}, context_length=32).to_json())"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "corpus.json")], env=env, capture_output=True, check=True
    )
    assert done.stdout.decode("utf-8") == trained.to_json()
