"""The demo's parts on their own: typed config and packaged variants, thread choice, query scoring, prompt-set
selection on validation classes, and the icon sets' name matching and captions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_toy import color_pipeline, write_color_emoji_set

from clipforge.cli import main
from clipforge.data.builders.icons import Icon, captions_for, name_key
from clipforge.demo.config import (
    DEMO_CONFIG_FILE,
    DemoConfig,
    demo_train_config,
    flatten,
    load_demo_config,
    packaged,
)
from clipforge.demo.queries import Query, load_queries, precision_at_k, score_queries
from clipforge.demo.threads import ThreadChooser, candidate_counts
from clipforge.errors import UserError
from clipforge.eval import prompt_select
from clipforge.eval.datasets import DatasetConfig
from clipforge.eval.suite import EMOJI, SuiteConfig, run_benchmarks
from clipforge.utils.configs import write_resolved

REPO = Path(__file__).resolve().parents[1]


def test_demo_config_layers_defaults_quick_yaml_and_overrides(tmp_path):
    assert load_demo_config() == DemoConfig()
    quick = load_demo_config(quick=True)
    assert quick.images == 160 and quick.data == "" and "steps=12" in quick.train
    assert quick.data_dir() == Path("runs/demo/emoji")  # a subset never lands in data/emoji
    (tmp_path / "d.yaml").write_text("out: runs/x\nicons: [mdi]\n")
    cfg = load_demo_config(tmp_path / "d.yaml", ["threads=1", "train=[seed=2]"], quick=True)
    assert (cfg.out, cfg.icons, cfg.threads, cfg.train, cfg.images) == ("runs/x", ("mdi",), 1, ("seed=2",), 160)
    with pytest.raises(UserError, match="unknown key 'ouptut'"):
        load_demo_config(None, ["ouptut=x"])
    with pytest.raises(UserError, match="threads"):
        load_demo_config(None, ["threads=-1"])


def test_the_resolved_demo_config_runs_the_same_demo_again(tmp_path):
    cfg = load_demo_config(None, [f"out={tmp_path}", "icons=[mdi]", "train=[seed=2,steps=5]", "eval_limit=9"],
                           quick=True)  # fmt: skip
    path = write_resolved(cfg, tmp_path, DEMO_CONFIG_FILE)  # what run_demo writes into OUT first
    assert load_demo_config(path) == cfg != DemoConfig()


def test_flatten_writes_overrides_that_read_back():
    assert flatten({"batch_size": 512, "data": {"workers": 8}, "train": ["a=1"], "s": ""}) == [
        "batch_size=512", "data.workers=8", 'train=["a=1"]', 's=""',
    ]  # fmt: skip


def test_demo_train_config_applies_recipe_gpu_variant_and_overrides(tmp_path):
    cfg = DemoConfig(out=str(tmp_path), train=("seed=3", "steps=7"), threads=1)
    cpu = demo_train_config(cfg, tmp_path / "emoji", cuda=False)
    assert cpu.data.train == str(tmp_path / "emoji" / "trainval.jsonl") and cpu.run_dir == str(tmp_path / "train")
    assert (cpu.seed, cpu.steps, cpu.threads, cpu.precision) == (3, 7, 1, "fp32")
    gpu = demo_train_config(cfg, tmp_path / "emoji", cuda=True)
    assert (gpu.precision, gpu.batch_size, gpu.data.workers) == ("bf16", 512, 8)
    with_icons = demo_train_config(DemoConfig(icons=("mdi",)), tmp_path, cuda=False)
    assert with_icons.data.train.endswith("train_icons.jsonl")


def test_packaged_recipe_is_the_checkout_run_config():
    with packaged("tiny-emoji") as path:
        text = path.read_text()
    assert (REPO / "configs" / "runs" / "tiny-emoji.yaml").read_text() == text


def test_cli_print_config(capsys):
    assert main(["demo", "--quick", "out=runs/q", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "out: runs/q" in printed and "images: 160" in printed
    # The old convenience flags name the key that replaced them.
    assert main(["demo", "--fresh", "--print-config"]) == 2
    assert "--fresh is now a config key: write fresh=true" in capsys.readouterr().err
    assert main(["demo", "--device", "cuda"]) == 2
    assert "write device=cuda" in capsys.readouterr().err


class _Clock:
    """A fake clock: each step takes `cost[threads]` seconds."""

    def __init__(self, cost):
        self.now, self.cost, self.threads = 0.0, cost, None

    def __call__(self):
        return self.now

    def step(self):
        self.now += self.cost[self.threads]


def _run_chooser(cost, steps, period=50, change=None):
    """``change``: (step, new cost table) — the machine's load changes after that step."""
    clock = _Clock(cost)
    applied = []

    def set_threads(n):
        clock.threads = n
        applied.append(n)

    chooser = ThreadChooser((1, 2), window=3, period=period, set_threads=set_threads, clock=clock)
    clock.threads = chooser.current
    for step in range(1, steps + 1):
        if change is not None and step == change[0]:
            clock.cost = change[1]
        clock.step()
        chooser(step, {})
    return chooser, clock


def test_thread_chooser_keeps_the_faster_count_and_reprobes():
    chooser, clock = _run_chooser({1: 0.5, 2: 0.3}, steps=20)
    assert chooser.choices[0]["threads"] == 2 and clock.threads == 2
    chooser, clock = _run_chooser({1: 0.5, 2: 3.0}, steps=120)  # a busy machine: 2 threads collapse
    assert [c["threads"] for c in chooser.choices] == [1, 1, 1] and clock.threads == 1
    assert chooser.choices[0]["seconds_per_step"] == {"1": 0.5, "2": 3.0}


def test_thread_chooser_reprobes_as_soon_as_the_chosen_count_slows_down():
    # Idle at first (2 threads win), then other jobs arrive at step 30 and 2 threads collapse: the chooser must
    # not wait for the 200-step period to switch back to 1.
    chooser, clock = _run_chooser({1: 0.5, 2: 0.3}, steps=60, period=200, change=(30, {1: 0.6, 2: 3.0}))
    assert [c["threads"] for c in chooser.choices] == [2, 1] and clock.threads == 1
    assert chooser.choices[1]["step"] < 50
    # A steady machine is probed once per period only.
    chooser, _ = _run_chooser({1: 0.5, 2: 0.3}, steps=150, period=200)
    assert len(chooser.choices) == 1


def test_candidate_counts():
    assert candidate_counts(2) == (1, 2) and candidate_counts(1) == (1,) and candidate_counts(16) == (1, 8, 16)


def test_precision_and_query_scoring():
    assert precision_at_k(["a", "b", "a"], frozenset({"a"})) == pytest.approx(0.4)  # 2 of 5; missing = miss
    queries = [Query("x", frozenset({"a"})), Query("y", frozenset({"b"}))]
    scored = score_queries(lambda text, k: ["a"] * k, queries)
    assert scored["mean"] == pytest.approx(0.5) and scored["queries"][0]["precision"] == 1.0


def test_packaged_queries_are_twenty_with_relevant_labels(tmp_path):
    queries = load_queries()
    assert len(queries) == 20 and all(q.relevant for q in queries)
    assert queries[0].text == "a red heart"
    (tmp_path / "q.yaml").write_text("queries: [{query: a dog}]\n")
    with pytest.raises(UserError, match="relevant"):
        load_queries(tmp_path / "q.yaml")


def test_prompt_set_is_chosen_on_validation_classes(tmp_path):
    write_color_emoji_set(tmp_path)
    (tmp_path / "val.jsonl").write_text((tmp_path / "heldout.jsonl").read_text())
    # "noisy" names every colour in every prompt, which blurs the class embeddings apart from the class word.
    (tmp_path / "noisy.txt").write_text("{} red red green green blue blue yellow cyan\n")
    (tmp_path / "clean.txt").write_text("{}\n")
    validation = prompt_select.Validation(DatasetConfig(kind="jsonl", path=str(tmp_path / "val.jsonl")))
    choice = prompt_select.choose_templates(
        color_pipeline(), validation, candidates=(str(tmp_path / "noisy.txt"), str(tmp_path / "clean.txt"))
    )
    assert choice.templates == str(tmp_path / "clean.txt")
    assert choice.scores[str(tmp_path / "clean.txt")] > choice.scores[str(tmp_path / "noisy.txt")]
    assert "5 validation classes" in choice.chosen_on


def test_suite_auto_records_the_choice_and_falls_back_without_validation(tmp_path):
    write_color_emoji_set(tmp_path)
    cfg = SuiteConfig(emoji_root=str(tmp_path), templates="auto")
    result = run_benchmarks(color_pipeline(), EMOJI[:1], cfg)
    chosen = result.to_json()["templates"]["zeroshot.emoji_heldout"]
    assert chosen["templates"] == "openai" and "not found" in chosen["chosen_on"]  # no val.jsonl: the default
    (tmp_path / "val.jsonl").write_text((tmp_path / "heldout.jsonl").read_text())
    chosen = run_benchmarks(color_pipeline(), EMOJI[:1], cfg).templates["zeroshot.emoji_heldout"]
    assert set(chosen["val_top1"]) == set(prompt_select.CANDIDATES) and chosen["templates"] in prompt_select.CANDIDATES


def test_silhouette_view_makes_drawings_light_on_dark(tmp_path):
    from PIL import Image

    from clipforge.eval.datasets import ListImages

    drawing = Image.new("RGB", (8, 8), (255, 255, 255))
    drawing.paste(Image.new("RGB", (4, 4), (200, 0, 0)), (2, 2))
    seen = prompt_select.SilhouetteImages(ListImages([drawing])).load(0)
    assert seen.getpixel((0, 0)) == (0, 0, 0) and seen.getpixel((3, 3))[0] > 100


def test_icon_names_match_across_case_style_and_plural():
    assert name_key("Hearts (outline)") == name_key("heart") == "heart"
    assert name_key("grass") == "grass" and name_key("bus") == "bus"  # "ss" and short words keep their s
    assert name_key("Solid-Dog_face") == "dog face"


def test_icon_captions_drop_tags_naming_excluded_classes():
    icon = Icon("lucide", "car", "car", ("automobile", "vehicle", "Vehicle"), "transportation", None, "<svg/>")
    caps = captions_for(icon, excluded={name_key("automobile")})
    assert "car" in caps and "car icon" in caps and "car, vehicle" in caps
    assert not any("automobile" in c for c in caps)
    assert "car, a transportation icon" in caps and len(caps) == len(set(caps))


@pytest.mark.slow
def test_icon_sets_build_without_excluded_names(tmp_path):
    pytest.importorskip("resvg_py")
    from clipforge.data.builders.icons import build_icons

    stats = build_icons(tmp_path, ["heart", "dog"], sources=("mdi", "lucide"), size=32, limit=30)
    rows = [json.loads(line) for line in (tmp_path / "icons.jsonl").read_text().splitlines()]
    assert len(rows) == stats["images"] > 0 and stats["render_failed"] == 0
    assert not {name_key(r["label"]) for r in rows} & {"heart", "dog"}
    assert all((tmp_path / r["image"]).is_file() for r in rows)
    assert "Lucide" in (tmp_path / "ATTRIBUTION-icons.txt").read_text()
    assert build_icons(tmp_path, ["heart", "dog"], sources=("mdi", "lucide"), size=32, limit=30) == stats  # reused
