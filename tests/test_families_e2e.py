"""Each model family end to end: convert (from a tiny reference instance) -> load -> embed a small folder -> index
-> search over HTTP (a real uvicorn server on loopback), with nothing family-specific after the conversion.

SigLIP, EVA-02, PE-Core and MobileCLIP come from the OpenCLIP reference fixtures (tests/reference: OpenCLIP 3.3.0
+ timm state dicts) with a small tokenizer given as ``--tokenizer`` would give it (the fixtures' text towers have
256 ids); SigLIP 2 comes from a transformers Siglip2Model folder through ``clipforge convert --from hf``.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from search_helpers import draw, make_collection, png_bytes, serve_in_thread
from test_convert_mobileclip import fixture_config
from test_convert_open_clip_tokenizer import make_tokenizer

from clipforge.checkpoint import save_checkpoint
from clipforge.cli import main
from clipforge.convert.common import build_model
from clipforge.convert.open_clip import config_from_open_clip, import_open_clip
from clipforge.index.search import Searcher
from clipforge.pipeline import load
from clipforge.serve.app import create_app

FIXTURES = Path(__file__).parent / "reference" / "fixtures"
FAMILIES = {"siglip": "siglip_b16", "siglip2": None, "eva02": "eva02_b16", "pe-core": "pe_core_b16",
            "mobileclip": "mobileclip_s1"}  # fmt: skip
N_IMAGES = 6

pytestmark = pytest.mark.usefixtures("one_thread")


def convert_fixture(fixture: str, out: Path, tmp: Path) -> Path:
    """``convert --from open_clip`` of a fixture, through the same import call (a config file cannot carry the
    fixture's timm sizes, so the model config is built from its config.json + meta.json)."""
    folder = FIXTURES / fixture
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"reference fixture {folder} is not in this checkout")
    if fixture.startswith("mobileclip"):
        model = fixture_config(fixture)
    else:
        raw = json.loads((folder / "config.json").read_text())
        model = config_from_open_clip(raw, fixture, json.loads((folder / "meta.json").read_text())["timm_kwargs"]).model
    tokenizer = make_tokenizer(tmp / "tokenizer") / "tokenizer.json"
    imported = import_open_clip(folder / "model.safetensors", model, name=fixture, tokenizer=tokenizer)
    return save_checkpoint(build_model(imported), imported.config, out, tokenizer_json=imported.tokenizer_json)


def convert_siglip2_folder(out: Path, tmp: Path) -> Path:
    pytest.importorskip("transformers")
    from test_convert_hf_siglip import make_siglip  # needs transformers at import

    _, folder = make_siglip(tmp, "siglip2")
    assert main(["convert", "--from", "hf", str(folder), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_convert_load_embed_index_search_over_http(tmp_path, family):
    fixture = FAMILIES[family]
    ckpt = tmp_path / "ckpt"
    if fixture is None:
        convert_siglip2_folder(ckpt, tmp_path)
    else:
        convert_fixture(fixture, ckpt, tmp_path)
    pipeline = load(ckpt)  # the checkpoint is complete: model, tokenizer, preprocessing
    sigmoid = pipeline.model.cfg.init_logit_bias is not None
    assert sigmoid == family.startswith("siglip")
    collection = make_collection(tmp_path / "col", N_IMAGES)
    assert main(["embed", str(ckpt), str(collection), str(tmp_path / "emb"), "workers=0", "batch_size=4"]) == 0
    assert main(["index", str(tmp_path / "emb"), str(tmp_path / "idx")]) == 0
    base, stop = serve_in_thread(create_app(Searcher.open(tmp_path / "idx")))
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            health = http.get("/health").json()
            assert health["count"] == N_IMAGES and health["dim"] == pipeline.model.cfg.embed_dim
            query = (collection / "a" / "img003.png").read_bytes()
            top = http.post("/search", files={"image": ("q.png", query, "image/png")}, params={"k": 3}).json()
            assert top["results"][0]["path"] == "a/img003.png" and top["results"][0]["score"] > 0.99
            text = http.get("/search", params={"q": "a red circle", "k": N_IMAGES}).json()["results"]
            scores = [r["score"] for r in text]
            assert len(text) == N_IMAGES and scores == sorted(scores, reverse=True)
            image = png_bytes(draw((220, 40, 40), "circle"))
            r = http.post("/classify", files={"image": ("c.png", image, "image/png")}, data={"labels": "circle,square"})
            assert r.status_code == 200 and r.json()["probability"] == ("sigmoid" if sigmoid else "softmax")
    finally:
        stop()
