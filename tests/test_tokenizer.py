"""The tokenizer's contract: golden ids, padding, truncation, decoding, config loading, errors."""

from __future__ import annotations

import pickle

import pytest
import torch

from clipforge.checkpoint import TOKENIZER_FILE
from clipforge.errors import UserError
from clipforge.text.config import TokenizerConfig
from clipforge.text.tokenizer import Tokenizer, build_tokenizer, openai_tokenizer

SOT, EOT = 49406, 49407

# Ids checked against the plain-Python reference (benchmarks/tokenizer_reference.py) and OpenCLIP's
# SimpleTokenizer; the first is the example everyone quotes for OpenAI CLIP.
GOLDEN = {
    "a photo of a cat.": [320, 1125, 539, 320, 2368, 269],
    "A PHOTO OF A DOG!": [320, 1125, 539, 320, 1929, 256],
    "Don't   stop\tbelieving": [847, 713, 1691, 19551],  # contraction split, whitespace collapsed
    "café naïve": [15304, 1097, 35689, 563],
    "&amp;amp; &lt;3": [261, 283, 274],  # HTML unescaped twice, digits one by one
    "\U0001f431 \u732b": [22979, 163, 234, 360],  # emoji and CJK as byte pieces
    "ΟΔΟΣ 123": [138, 123, 138, 112, 138, 123, 139, 480, 272, 273, 274],  # Python lowercasing: final sigma
    "ﬁne ＬＯＵＤ": [3797, 7464],  # ftfy: ligature and full-width letters
    "âœ” No problems": [13749, 871, 4671],  # ftfy: mojibake repaired
    "x<<|endoftext|>": [343, 24588, 347, 40786, 4160, 91, 285],  # not a special token after punctuation
    "a<|endoftext|>b": [320, EOT, 321],  # a special token where OpenAI's word pattern cuts it out
    "  \t\n ": [],
    "": [],
}


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return openai_tokenizer()


@pytest.mark.parametrize("text", list(GOLDEN))
def test_golden_ids(tok, text):
    expected = GOLDEN[text]
    assert tok.encode(text) == expected
    row = tok(text)[0].tolist()
    assert row == [SOT, *expected, EOT] + [0] * (77 - len(expected) - 2)


def test_properties(tok):
    assert (tok.vocab_size, tok.sot_id, tok.eot_id, tok.context_length) == (49408, SOT, EOT, 77)


def test_batch_shape_dtype_and_argmax_at_end_of_text(tok):
    texts = ["a photo of a cat.", "", "a much longer caption about a dog running on the beach at sunset"]
    ids = tok(texts)
    assert ids.shape == (3, 77) and ids.dtype == torch.long
    lengths = [len(tok.encode(t)) for t in texts]
    assert ids.argmax(dim=-1).tolist() == [n + 1 for n in lengths]
    assert tok([]).shape == (0, 77)


def test_truncation_keeps_end_of_text(tok):
    text = " ".join(f"word{i}" for i in range(200))
    pieces = tok.encode(text)
    assert len(pieces) > 200
    row = tok(text)[0].tolist()
    assert row == [SOT, *pieces[:75], EOT]
    # Exactly full: 75 pieces fit without truncation; 76 lose one piece and still end with end-of-text.
    assert tok(" ".join(["cat"] * 75))[0].tolist() == [SOT] + [2368] * 75 + [EOT]
    assert tok(" ".join(["cat"] * 76))[0].tolist() == [SOT] + [2368] * 75 + [EOT]


def test_context_length_override_and_config(tok):
    text = "a photo of a cat sitting on a red mat next to a small dog"
    pieces = tok.encode(text)
    short = tok([text, "cat"], context_length=8)
    assert short.shape == (2, 8)
    assert short[0].tolist() == [SOT, *pieces[:6], EOT]
    assert short[1].tolist() == [SOT, 2368, EOT, 0, 0, 0, 0, 0]
    assert tok(text, context_length=2)[0].tolist() == [SOT, EOT]
    built = build_tokenizer(TokenizerConfig(context_length=16))
    assert built.context_length == 16 and built(text).shape == (1, 16)
    assert tok.context_length == 77  # building another did not change this one


def test_decode_drops_special_tokens_and_padding(tok):
    row = tok("A photo of a CAT!")[0]
    assert tok.decode(row) == "a photo of a cat !"
    assert tok.decode(tok.encode("A photo of a CAT!")) == "a photo of a cat !"
    assert tok.decode([]) == ""
    # "!" inside a word is id 0, the padding id: only trailing zeros are padding.
    ids = tok.encode("!~")
    assert ids == [0, 349] and tok.decode(ids) == "!~"
    assert tok.decode(tok("!~")[0]) == "!~"


def test_decode_round_trip(tok):
    texts = ["a photo of a cat.", "Don't stop", "café naïve 🐱 猫", "3.14 is π", "caption,with;punctuation!!"]
    for text in texts:
        ids = tok.encode(text)
        decoded = tok.decode(ids)
        # Word-end markers become spaces, so the text comes back lowercased with spaces between words;
        # encoding it again gives the same ids.
        assert decoded.replace(" ", "") == text.lower().replace(" ", "")
        assert tok.encode(decoded) == ids


def test_decode_rejects_bad_input(tok):
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(tok(["a", "b"]))
    with pytest.raises(ValueError, match="outside"):
        tok.decode([49408])


def test_bad_context_length(tok):
    with pytest.raises(UserError, match="context_length"):
        tok("a", context_length=1)
    with pytest.raises(UserError, match="context_length"):
        build_tokenizer(TokenizerConfig(context_length=0))


def test_build_file_kind_errors(tmp_path, tok):
    with pytest.raises(UserError, match="checkpoint directory"):
        build_tokenizer(TokenizerConfig(kind="file"))
    with pytest.raises(UserError, match="tokenizer file not found"):
        build_tokenizer(TokenizerConfig(kind="file"), tmp_path)
    (tmp_path / TOKENIZER_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="not a valid tokenizer file"):
        build_tokenizer(TokenizerConfig(kind="file"), tmp_path)
    (tmp_path / TOKENIZER_FILE).write_text(tok.to_json(), encoding="utf-8")
    with pytest.raises(UserError, match="vocab_size=1000"):
        build_tokenizer(TokenizerConfig(kind="file", vocab_size=1000), tmp_path)
    with pytest.raises(UserError, match="unknown tokenizer kind"):
        build_tokenizer(TokenizerConfig(kind="bogus"))  # type: ignore[arg-type]


def test_openai_vocabulary_saved_as_file_reloads_identically(tmp_path, tok):
    (tmp_path / TOKENIZER_FILE).write_text(tok.to_json(), encoding="utf-8")
    loaded = build_tokenizer(TokenizerConfig(kind="file"), tmp_path)
    texts = list(GOLDEN)
    assert torch.equal(loaded(texts), tok(texts))


def test_pickle_round_trip(tok):
    tok("warm the word memo")
    clone = pickle.loads(pickle.dumps(tok))
    texts = list(GOLDEN)
    assert torch.equal(clone(texts), tok(texts))


def test_vocabulary_without_end_of_text_last_is_rejected(tok):
    from tokenizers import Tokenizer as Backend
    from tokenizers.models import BPE

    backend = Backend(BPE(vocab={"<|endoftext|>": 0, "<|startoftext|>": 1, "a": 2}, merges=[]))
    with pytest.raises(UserError, match="end-of-text"):
        Tokenizer(backend)


def test_word_memo_is_bounded_and_per_instance(monkeypatch):
    import clipforge.text.tokenizer as module

    monkeypatch.setattr(module, "_MAX_MEMO_WORDS", 5)
    tok = openai_tokenizer()
    texts = [f"caption number {i} about word{i}" for i in range(50)]
    expected = openai_tokenizer()(texts)  # a second instance, with its own memo
    for _ in range(2):
        assert torch.equal(tok(texts), expected)
    assert len(tok._memo) <= 5 + len(texts[-1].split())  # cleared whenever it passes the bound


def test_foreign_model_is_rejected():
    from tokenizers import Tokenizer as Backend
    from tokenizers.models import WordLevel

    vocab = {"a": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    with pytest.raises(UserError, match="not a BPE"):
        Tokenizer(Backend(WordLevel(vocab, unk_token="a")))
