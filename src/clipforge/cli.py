"""The ``clipforge`` command line.

Each verb lives in ``clipforge.commands.<verb>`` with two functions: ``add_arguments(parser)`` (cheap:
no heavy imports) and ``run(args) -> int``. Heavy libraries (torch, faiss, fastapi) are imported inside
``run`` so ``clipforge --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from clipforge import __version__
from clipforge.commands.config_args import check_retired
from clipforge.errors import UserError

VERBS: dict[str, str] = {
    "data": "build datasets (emoji demo set, shards from folders/tables)",
    "train": "train a CLIP model from a YAML config",
    "eval": "zero-shot / retrieval / linear-probe evaluation",
    "embed": "embed an image collection into Parquet/npy",
    "index": "build or update a FAISS index from embeddings",
    "search": "text->image, image->image, image->text search",
    "serve": "HTTP API and web page over an index",
    "moderate": "flag images that match concept texts",
    "convert": "import OpenAI / OpenCLIP / Hugging Face weights",
    "export": "export a clipforge checkpoint to another format",
    "demo": "run the end-to-end demo (data, train, eval, index, search)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipforge",
        description="Train, import, evaluate and serve CLIP models.",
        epilog="Run 'clipforge VERB --help' for a verb's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"clipforge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, summary in VERBS.items():
        module = importlib.import_module(f"clipforge.commands.{verb}")
        verb_parser = sub.add_parser(
            verb,
            help=summary,
            description=(module.__doc__ or summary).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # SUPPRESS: unset after the verb, the verb's parser must not reset a `clipforge --debug VERB` to False.
        verb_parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                 help="show full tracebacks on errors")  # fmt: skip
        module.add_arguments(verb_parser)
        verb_parser.set_defaults(_run=module.run, _retired=getattr(module, "RETIRED", {}))
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; for config verbs, words after an option are more positionals/overrides.

    argparse gives a ``nargs="*"`` positional only the words before the first option, so the rest of
    ``clipforge eval CKPT --config run.yaml suite.limit=5`` comes back unparsed and is appended here.

    Raises:
        UserError: for a flag that became a config key (the message names the key).
    """
    args, extras = parser.parse_known_args(argv)
    if not extras:
        return args
    if hasattr(args, "items") and not any(e.startswith("-") for e in extras):
        args.items = [*args.items, *extras]
        return args
    check_retired(argv, getattr(args, "_retired", {}))
    return parser.parse_args(argv)  # argparse's own message for anything else unknown


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse(parser, argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last-resort message for the CLI user
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {exc}\n  hint: re-run with --debug for the traceback", file=sys.stderr)
        return 1
