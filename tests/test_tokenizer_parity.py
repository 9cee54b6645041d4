"""clipforge's tokenizer gives OpenAI CLIP's ids: checked against independent implementations.

References: the plain-Python implementation of OpenAI's algorithm in benchmarks/tokenizer_reference.py,
transformers' CLIPTokenizer built offline from a vocab.json + merges.txt derived from the bundled merge
file, and OpenCLIP's SimpleTokenizer where open_clip is installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import types
import zipfile
from importlib import resources
from pathlib import Path

import pytest
from tokenizer_helpers import load_reference

from clipforge.text.tokenizer import OPENAI_VOCAB_FILE, openai_tokenizer

N_TEXTS = 3000




@pytest.fixture(scope="module")
def vocab_path():
    with resources.as_file(resources.files("clipforge.text") / "data" / OPENAI_VOCAB_FILE) as path:
        yield path


@pytest.fixture(scope="module")
def reference(vocab_path):
    return load_reference().ReferenceBPE.from_file(vocab_path)


@pytest.fixture(scope="module")
def texts():
    return load_reference().make_texts(N_TEXTS, seed=0)


@pytest.fixture(scope="module")
def tokenizer():
    return openai_tokenizer()


def test_batch_ids_equal_reference(tokenizer, reference, texts):
    ours = tokenizer(texts).tolist()
    theirs = reference(texts)
    mismatched = [t for t, a, b in zip(texts, ours, theirs, strict=True) if a != b]
    assert not mismatched, f"{len(mismatched)} of {len(texts)} texts differ, e.g. {mismatched[:3]!r}"


def test_encode_and_decode_equal_reference(tokenizer, reference, texts):
    for text in texts:
        ids = reference.encode(text)
        assert tokenizer.encode(text) == ids, repr(text)
        # The reference keeps OpenAI's trailing word-end space; clipforge strips it.
        assert tokenizer.decode(ids) == reference.decode(ids).strip(), repr(text)


def test_reference_is_not_trivially_equal(tokenizer, reference):
    # Guard against a broken comparison: the two must disagree when the vocabulary does.
    assert reference.encode("a photo of a cat.") == tokenizer.encode("a photo of a cat.")
    assert reference.encode("a photo of a cat.") != tokenizer.encode("a photo of a dog.")


def test_transformers_clip_tokenizer_on_cleaned_texts(tokenizer, reference, texts, tmp_path):
    transformers = pytest.importorskip("transformers")
    ref_module = load_reference()
    # vocab.json / merges.txt in Hugging Face's format, derived from the bundled merge file.
    (tmp_path / "vocab.json").write_text(json.dumps(reference.token_id), encoding="utf-8")
    merges = sorted(reference.rank, key=reference.rank.get)
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges), encoding="utf-8")
    hf = transformers.CLIPTokenizer.from_pretrained(tmp_path)  # a local folder: nothing is downloaded
    assert hf.vocab_size == tokenizer.vocab_size == 49408
    # transformers' fast CLIPTokenizer skips ftfy and lowercases in Rust, so it is given texts already
    # cleaned the OpenAI way, and only caption-like ones (ASCII and Latin-1 letters) where its Rust
    # lowercasing and GPT-2 byte-level split cannot differ from OpenAI's.
    cleaned = [ref_module.ReferenceBPE.clean(t) for t in texts]
    simple = [t for t in cleaned if all(c.isascii() or "\u00c0" <= c <= "\u00ff" for c in t) and "<|" not in t]
    assert len(simple) > N_TEXTS // 3
    got = [hf(t, add_special_tokens=False)["input_ids"] for t in simple]
    assert got == [tokenizer.encode(t) for t in simple]


def open_clip_tokenizer_source() -> str | None:
    """open_clip/tokenizer.py from an installed open_clip, or from the wheel `make test` downloads."""
    spec = importlib.util.find_spec("open_clip")
    if spec is not None and spec.origin is not None:
        return (Path(spec.origin).parent / "tokenizer.py").read_text(encoding="utf-8")
    wheel = os.environ.get("CLIPFORGE_OPENCLIP_WHEEL") or str(
        Path(__file__).resolve().parents[1] / ".whl" / "open_clip_torch-3.3.0-py3-none-any.whl"
    )
    if not Path(wheel).is_file():
        return None
    with zipfile.ZipFile(wheel) as zf:
        return zf.read("open_clip/tokenizer.py").decode("utf-8")


def test_open_clip_simple_tokenizer_where_available(tokenizer, texts, vocab_path):
    source = open_clip_tokenizer_source()
    if source is None:
        pytest.skip(
            "open_clip is neither installed nor downloaded to .whl/ (pip download --no-deps open_clip_torch==3.3.0 -d .whl)"
        )
    # Run open_clip/tokenizer.py on its own: the package's __init__ needs torchvision.
    module = types.ModuleType("_open_clip_tokenizer")
    module.__file__ = str(vocab_path.parent / "tokenizer.py")  # its default vocabulary path: ours, same file
    saved = os.environ.get("TOKENIZERS_PARALLELISM")  # the module sets it at import
    try:
        exec(compile(source, "open_clip/tokenizer.py", "exec"), module.__dict__)
    finally:
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved
    oc = module.SimpleTokenizer(str(vocab_path))
    # OpenCLIP renamed the special tokens; texts spelling either name literally are left out.
    plain = [t for t in texts if "<" not in t]
    assert len(plain) > N_TEXTS // 2
    assert oc(plain).tolist() == tokenizer(plain).tolist()
    for text in plain[:500]:
        assert oc.encode(text) == tokenizer.encode(text), repr(text)
