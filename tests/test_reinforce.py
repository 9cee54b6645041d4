"""Dataset reinforcement: the stored teacher embeddings are the online teacher's for the stored crops; resumable
writing with skipped images counted; training on reinforced shards runs no teacher and resumes exactly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from train_support import tiny_config, write_png_pairs

from clipforge.checkpoint import PipelineConfig, save_checkpoint
from clipforge.data.config import DataConfig, PreprocessConfig
from clipforge.data.loader import build_loader
from clipforge.dist.env import World
from clipforge.errors import UserError
from clipforge.loss.config import LossConfig
from clipforge.model.clip import CLIP
from clipforge.model.registry import get_config
from clipforge.text.config import TokenizerConfig
from clipforge.text.tokenizer import build_tokenizer
from clipforge.train.config import CheckpointConfig
from clipforge.train.reinforce import MANIFEST_FILE, ReinforceSettings, read_manifest, reinforce
from clipforge.train.teacher import OnlineTeacher, StoredTeacher
from clipforge.train.trainer import run_training

pytestmark = pytest.mark.usefixtures("one_thread")
FP32_TOL = 1e-5
SETTINGS = ReinforceSettings(augmentations=3, crop_scale=(0.3, 1.0), silhouette=0.5, seed=7, shard_size=4)


def make_teacher(path: Path, name: str = "test-mobileclip", seed: int = 1) -> Path:
    """A random teacher checkpoint whose preprocessing and tokenizer differ from the students' (24 px, bilinear,
    its own normalization, OpenAI's tokenizer at context 16)."""
    torch.manual_seed(seed)
    cfg = get_config(name)
    cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, image_size=24 if "vit" not in name else 32))
    model = CLIP(cfg).eval()
    for m in model.modules():  # BatchNorm statistics that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    prep = PreprocessConfig(image_size=cfg.vision.image_size, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.25),
                            interpolation="bilinear")  # fmt: skip
    tok = TokenizerConfig(kind="openai", context_length=cfg.text.context_length)
    return save_checkpoint(model, PipelineConfig(cfg, tok, prep), path)


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """10 images with two captions each, one of them corrupt, one without captions."""
    table = write_png_pairs(tmp_path / "src", 10, size=40)
    (tmp_path / "src" / "img003.png").write_bytes(b"not a png")
    rows = [json.loads(line) for line in table.read_text().splitlines()]
    rows[5]["captions"] = []
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return table


def _student_loader(shards: Path, teacher: OnlineTeacher | None = None, epoch: int = 0):
    tok = build_tokenizer(TokenizerConfig(kind="openai", context_length=16), None)
    cfg = DataConfig(train=str(shards), caption_column="captions", workers=0)
    return build_loader(cfg, tokenizer=tok, preprocess=PreprocessConfig(image_size=32), world=World(), batch_size=4,
                        train=True, epoch=epoch, seed=3, teacher=teacher.prep if teacher else None)  # fmt: skip


def test_stored_embeddings_are_the_online_teachers_for_the_same_crops(tmp_path, pairs):
    teacher = make_teacher(tmp_path / "teacher")
    result = reinforce(teacher, pairs, tmp_path / "rein", SETTINGS, caption_column="captions", batch_size=5)
    assert result.written == 8 and result.skipped == {"corrupt": 1, "empty_caption": 1}
    assert result.shards == 3 and sorted(p.name for p in (tmp_path / "rein").glob("*.tar")) == [
        "shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]  # fmt: skip
    manifest = read_manifest(str(tmp_path / "rein"))
    assert manifest is not None and manifest.settings == SETTINGS and manifest.complete
    online = OnlineTeacher(teacher, torch.device("cpu"))
    stored = StoredTeacher(manifest.logit_scale, manifest.logit_bias)
    assert stored.logit_scale == pytest.approx(online.model.logit_scale.exp().item())
    seen = 0
    for epoch in range(3):  # different epochs pick different stored augmentations and captions
        for batch in _student_loader(tmp_path / "rein", online, epoch):
            assert batch.pixels.shape[1:] == (3, 32, 32) and batch.teacher.pixels.shape[1:] == (3, 24, 24)
            want, got = online(batch, torch.device("cpu")), stored(batch, torch.device("cpu"))
            assert (want.image_features - got.image_features).abs().max() <= FP32_TOL
            assert (want.text_features - got.text_features).abs().max() <= FP32_TOL
            seen += batch.pixels.shape[0]
    assert seen == 3 * 8


def test_interrupted_reinforcement_resumes_to_the_same_shards(tmp_path, pairs):
    teacher = make_teacher(tmp_path / "teacher")
    full = tmp_path / "full"
    reinforce(teacher, pairs, full, SETTINGS, caption_column="captions")

    class Killed(Exception):
        pass

    def die_after_first(done: int, total: int) -> None:
        if done == 1:
            raise Killed

    cut = tmp_path / "cut"
    with pytest.raises(Killed):
        reinforce(teacher, pairs, cut, SETTINGS, caption_column="captions", on_shard=die_after_first)
    with pytest.raises(UserError, match="incomplete"):
        read_manifest(str(cut))
    again = reinforce(teacher, pairs, cut, SETTINGS, caption_column="captions")
    assert again.resumed_shards == 1 and again.written == 8
    for shard in sorted(full.glob("*.tar")):
        assert (cut / shard.name).read_bytes() == shard.read_bytes(), shard.name
    with pytest.raises(UserError, match="another teacher, source or settings"):
        reinforce(teacher, pairs, cut, dataclasses.replace(SETTINGS, augmentations=2), caption_column="captions")
    bad = json.loads((cut / MANIFEST_FILE).read_text())
    assert bad["complete"] is True


def test_training_on_reinforced_shards_runs_no_teacher_and_resumes_exactly(tmp_path, pairs, monkeypatch):
    teacher = make_teacher(tmp_path / "teacher")
    reinforce(teacher, pairs, tmp_path / "rein", SETTINGS, caption_column="captions")

    def no_teacher_model(*args, **kwargs):
        raise AssertionError("a teacher model was loaded")

    monkeypatch.setattr(OnlineTeacher, "__init__", no_teacher_model)
    monkeypatch.setattr("clipforge.pipeline.load", no_teacher_model)
    data = DataConfig(train=str(tmp_path / "rein"), caption_column="captions", workers=2)
    kw = dict(steps=7, data=data, batch_size=4, image_size=64, model="test-mobileclip",
              loss=LossConfig(kind="distill", distill_weight=2.0), checkpoint=CheckpointConfig(every_steps=2))
    full = run_training(tiny_config(tmp_path / "full", **kw))

    class Stop(Exception):
        pass

    def stop_at_5(step: int, metrics: dict) -> None:
        if step == 5:
            raise Stop

    cut = tiny_config(tmp_path / "cut", **kw)
    with pytest.raises(Stop):
        run_training(cut, on_step=stop_at_5)  # 3 batches per epoch: the step-4 checkpoint is mid-epoch 1
    resumed = run_training(cut, resume="latest")
    assert sorted(resumed.losses) == [5, 6, 7]
    assert all(resumed.losses[s] == full.losses[s] for s in (5, 6, 7))


def test_a_distill_run_needs_a_teacher(tmp_path, pairs):
    cfg = tiny_config(tmp_path / "run", data=DataConfig(train=str(pairs), caption_column="captions", workers=0),
                      loss=LossConfig(kind="distill"))  # fmt: skip
    with pytest.raises(UserError, match="needs a teacher"):
        run_training(cfg)


def test_reinforce_cli(tmp_path, pairs, capsys):
    from clipforge.cli import main

    teacher = make_teacher(tmp_path / "teacher")
    argv = ["data", "reinforce", str(teacher), str(pairs), "--out", str(tmp_path / "rein"), "--augmentations", "2",
            "--caption-column", "captions", "--shard-size", "5", "--crop-scale", "0.5", "1.0"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out == {"written": 8, "shards": 2, "skipped": {"corrupt": 1, "empty_caption": 1}, "resumed_shards": 0}
    assert main([*argv[:-2], "0", "1.0"]) == 2  # a crop scale of 0 is refused with a message
    assert "--crop-scale" in capsys.readouterr().err
