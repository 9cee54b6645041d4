"""The demo's typed config and the recipes it ships (package data under ``clipforge/demo/configs``).

    cfg = load_demo_config(None, ["out=runs/demo2"])             # defaults <- YAML <- key=value
    cfg = load_demo_config(None, [], quick=True)                 # the packaged quick variant first
    train_cfg = demo_train_config(cfg, data_dir, cuda=False)     # the recipe with the demo's overrides

Files: ``tiny-emoji.yaml`` is the training recipe ``make demo`` trains (``configs/runs/tiny-emoji.yaml`` in a
checkout is a link to it); ``quick.yaml`` is the ``--quick`` variant (DemoConfig keys); ``gpu.yaml`` holds the
TrainConfig overrides applied when the demo trains on a GPU.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from clipforge.errors import UserError
from clipforge.train.config import load_train_config
from clipforge.utils.configs import resolve_config

RECIPE = "tiny-emoji"
DEMO_CONFIG_FILE = "demo_config.yaml"  # written into OUT: `clipforge demo OUT/demo_config.yaml` runs it again
QUICK = "quick"
GPU = "gpu"


@dataclass(frozen=True)
class DemoConfig:
    """What ``clipforge demo`` runs.

    Args:
        out: demo directory (training run, results.json, report.html, embeddings, index).
        data: where the emoji set is built; "" = ``OUT/emoji`` (the quick variant, so a subset never stands
            in for the full set).
        recipe: training recipe: a packaged name (``tiny-emoji``) or a TrainConfig YAML file.
        icons: named icon sets added to the training data (names from ``data.builders.icons.SOURCES``);
            () = emoji only, the default: at the demo's budget the icons, ~5x as many images as the emoji,
            cost held-out emoji accuracy and gave Fashion-MNIST nothing (docs/demo.md, "Levers").
        images: only the first N named emoji (0 = all).
        icons_per_set: at most N icons per set (0 = all).
        device: "auto" (CUDA when present), "cpu" or "cuda".
        threads: torch threads while training; 0 = choose from measured step times (``demo.threads``), so a
            busy machine does not make a fixed count collapse.
        train: TrainConfig ``key=value`` overrides applied after the recipe (and after ``gpu.yaml`` on a GPU).
        templates: zero-shot prompt sets: ``auto`` chooses each benchmark's on its validation classes.
        eval_limit: at most N test images per benchmark (0 = all).
        queries: the search queries file (YAML with their relevant labels); "" = the packaged list.
        shown_queries: how many of the queries' searches are printed (all are scored).
        fresh: retrain even when OUT holds a finished run of the same config.
    """

    out: str = "runs/demo"
    data: str = "data/emoji"
    recipe: str = RECIPE
    icons: tuple[str, ...] = ()
    images: int = 0
    icons_per_set: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0
    train: tuple[str, ...] = ()
    templates: str = "auto"
    eval_limit: int = 0
    queries: str = ""
    shown_queries: int = 3
    fresh: bool = False

    def __post_init__(self) -> None:
        for name in ("images", "icons_per_set", "threads", "eval_limit", "shown_queries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def data_dir(self) -> Path:
        return Path(self.data) if self.data else Path(self.out) / "emoji"


@contextlib.contextmanager
def packaged(name: str) -> Iterator[Path]:
    """A file of ``clipforge/demo/configs`` (``NAME.yaml``) as a real path, for readers that need one."""
    ref = resources.files("clipforge.demo").joinpath("configs", f"{name}.yaml")
    if not ref.is_file():
        raise UserError(f"clipforge's packaged demo config {name}.yaml is missing", hint="reinstall clipforge")
    with resources.as_file(ref) as path:
        yield path


def load_demo_config(yaml_path: str | Path | None = None, overrides: Sequence[str] = (),
                     quick: bool = False) -> DemoConfig:
    """Defaults <- the quick variant (``quick``) <- ``yaml_path`` <- ``overrides`` (``key=value``).

    Args:
        yaml_path: optional DemoConfig YAML.
        overrides: ``key=value`` strings, e.g. ``out=runs/demo2`` or ``train=[seed=1]``.
        quick: start from the packaged quick variant.
    """
    layers: list[str] = []
    if quick:
        with packaged(QUICK) as path:
            layers = flatten(_read(path))
    if yaml_path is not None:
        layers += flatten(_read(Path(yaml_path)))
    return resolve_config(DemoConfig, None, [*layers, *overrides])


def demo_train_config(cfg: DemoConfig, data_dir: Path, cuda: bool) -> Any:
    """The TrainConfig the demo trains: recipe <- gpu.yaml (on a GPU) <- the demo's own keys <- ``cfg.train``.

    Args:
        cfg: the demo config.
        data_dir: the built emoji set (its training table replaces the recipe's directory).
        cuda: the demo trains on a GPU.
    """
    table = "train_icons.jsonl" if cfg.icons else "trainval.jsonl"  # every class that is not a test class
    own = [f"data.train={data_dir / table}", f"run_dir={Path(cfg.out) / 'train'}", f"device={cfg.device}"]
    if cfg.threads:
        own.append(f"threads={cfg.threads}")
    gpu: list[str] = []
    if cuda:
        with packaged(GPU) as path:
            gpu = flatten(_read(path))
    with recipe_path(cfg.recipe) as recipe:
        return load_train_config(recipe, [*gpu, *own, *cfg.train])


@contextlib.contextmanager
def recipe_path(recipe: str) -> Iterator[Path]:
    """A packaged recipe name, or a path to a TrainConfig YAML."""
    if Path(recipe).suffix in (".yaml", ".yml", ".json"):
        if not Path(recipe).is_file():
            raise UserError(f"recipe file {recipe} does not exist", hint=f"use the packaged '{RECIPE}' or a YAML path")
        yield Path(recipe)
        return
    with packaged(recipe) as path:
        yield path


def _read(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: the top level must be a mapping of keys")
    return loaded


def flatten(data: dict[str, Any], prefix: str = "") -> list[str]:
    """A nested mapping as ``dotted.key=value`` overrides (values written as JSON, which YAML reads back).

    So a packaged variant layers onto a config with the same checks as the user's own overrides.
    """
    out: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += flatten(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={json.dumps(value)}")
    return out
