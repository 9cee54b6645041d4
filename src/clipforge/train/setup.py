"""Building a run's parts from its config: tokenizer, model, data loader factory."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from clipforge.checkpoint import TOKENIZER_FILE
from clipforge.data.loader import Batch, build_loader
from clipforge.data.sources import open_source
from clipforge.dist.sync import barrier
from clipforge.errors import UserError
from clipforge.eval.datasets import check_available, zeroshot_dataset
from clipforge.eval.zeroshot import make_zeroshot_hook_for
from clipforge.text.config import TokenizerConfig
from clipforge.text.tokenizer import Tokenizer, build_tokenizer, train_tokenizer
from clipforge.train.config import TrainConfig, resolve_model
from clipforge.utils.io import atomic_write_text

if TYPE_CHECKING:
    from clipforge.data.teacher import TeacherPrep
    from clipforge.dist.env import World
    from clipforge.model.config import CLIPConfig
    from clipforge.pipeline import Pipeline

log = logging.getLogger("clipforge.train")


class EpochLoader(Protocol):
    """What the trainer needs of a loader: batches of one epoch (after skipping some) and their count."""

    def __iter__(self) -> Iterable[Batch]: ...
    def __len__(self) -> int: ...


# (epoch, skip_batches) -> that epoch's loader for this rank, already past the first skip_batches batches.
LoaderFactory = Callable[[int, int], EpochLoader]


@dataclasses.dataclass
class TokenizerSetup:
    config: TokenizerConfig
    tokenize: Callable[[list[str]], torch.Tensor]
    json: str | None  # the trained vocabulary, saved with the final model; None for "openai"


def setup_tokenizer(cfg: TrainConfig, context_length: int, run_dir: Path, world: World) -> TokenizerSetup:
    """The run's tokenizer: OpenAI's, or a BPE vocabulary trained on the training captions.

    A trained vocabulary is written to ``run_dir/tokenizer.json`` by rank 0 once and reused on resume, so a
    resumed run tokenizes exactly as before.
    """
    if cfg.tokenizer == "openai":
        tok_cfg = TokenizerConfig(kind="openai", context_length=context_length)
        return TokenizerSetup(tok_cfg, build_tokenizer(tok_cfg, None), None)
    path = run_dir / TOKENIZER_FILE
    if world.is_main and not path.is_file():
        texts = _training_captions(cfg)
        log.info("training a %d-token BPE vocabulary on %d captions", cfg.tokenizer, len(texts))
        atomic_write_text(path, train_tokenizer(texts, cfg.tokenizer, context_length).to_json())
    barrier(world)

    # A small corpus can yield fewer ids than asked for: the vocabulary's own size is the model's.
    vocab_size = Tokenizer.from_file(path, context_length).vocab_size
    tok_cfg = TokenizerConfig(kind="file", context_length=context_length, vocab_size=vocab_size)
    return TokenizerSetup(tok_cfg, build_tokenizer(tok_cfg, run_dir), path.read_text())


def _training_captions(cfg: TrainConfig) -> list[str]:
    if not cfg.data.train:
        raise UserError("data.train is empty", hint="set data.train=PATH (folder, CSV/TSV/JSONL/Parquet, shards)")
    source = open_source(cfg.data.train, cfg.data.image_column, cfg.data.caption_column, require_captions=True)
    return [c for item in source.items for c in item.captions]


def model_config(cfg: TrainConfig, tokenizer: TokenizerConfig | None = None) -> CLIPConfig:
    """The trained model's config: registry name or given config, run image size, the tokenizer's vocab size."""
    vocab = tokenizer.vocab_size if tokenizer is not None and tokenizer.kind == "file" else None
    return resolve_model(cfg, vocab)


def default_loader_factory(
    cfg: TrainConfig,
    tokenize: Callable[[list[str]], torch.Tensor],
    preprocess: Any,
    world: World,
    teacher: TeacherPrep | None = None,
) -> LoaderFactory:
    """Loaders from ``clipforge.data.loader.build_loader`` for this rank's share of the global batch.

    ``teacher``: an online teacher's preprocessing and tokenizer, prepared by the loader for every sample.
    """
    per_rank = cfg.batch_size // world.world_size

    def factory(epoch: int, skip_batches: int) -> EpochLoader:
        return build_loader(
            cfg.data,
            tokenizer=tokenize,
            preprocess=preprocess,
            world=world,
            batch_size=per_rank,
            train=True,
            epoch=epoch,
            seed=cfg.seed,
            skip_batches=skip_batches,
            teacher=teacher,
        )

    return factory


def pick_device(cfg: TrainConfig) -> str | None:
    """The device argument for ``init_distributed``: None lets it choose CUDA when available."""
    return None if cfg.device == "auto" else cfg.device


def config_eval_fn(cfg: TrainConfig) -> Callable[[Pipeline], dict[str, float]] | None:
    """The in-training zero-shot check ``cfg.eval`` describes, or None when ``eval_every`` is 0.

    Its images are read at the first evaluation (which only rank 0 runs), so the other ranks never load them.

    Raises:
        UserError: for ``eval_every`` without ``eval.data``, or ``eval.data`` that is not there (a missing file
            or folder, an MNIST-style set that is not installed).
    """
    data = cfg.eval.data
    if not cfg.eval_every:
        if data:
            log.warning("eval.data=%s is set but eval_every is 0: no evaluation during training", data)
        return None
    if not data:
        raise UserError(f"eval_every={cfg.eval_every} has nothing to evaluate",
                        hint="set eval.data= a labelled .jsonl (e.g. data/emoji/val.jsonl), a folder of class "
                        "folders, fashion-mnist or animal-mnist")  # fmt: skip
    dataset = zeroshot_dataset(data, cfg.eval.limit or None)
    try:
        check_available(dataset)
    except UserError as exc:
        raise UserError(f"eval.data={data}: {exc.args[0]}", hint=exc.hint) from exc
    hook: Callable[[Pipeline], dict[str, float]] | None = None

    def evaluate(pipeline: Pipeline) -> dict[str, float]:
        nonlocal hook
        if hook is None:
            hook = make_zeroshot_hook_for(dataset, cfg.eval.templates, cfg.eval.batch_size)
        return hook(pipeline)

    return evaluate
