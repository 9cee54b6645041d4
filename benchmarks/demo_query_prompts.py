"""Does embedding the demo's search queries through a prompt set help? precision@5 of the 20 fixed queries.

For each seed's demo run (`benchmarks/demo_seeds.py` layout: ROOT/seedN/train/final and ROOT/seedN/index), every
query is searched as typed and as the renormalized mean of its embeddings through each prompt set (the way
zero-shot embeds a class name, `eval.zeroshot.class_embeddings`), and scored as the demo scores it.

    python benchmarks/demo_query_prompts.py --seeds 0 1 2 --root runs/bench-demo

Writes benchmarks/results/demo_query_prompts.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import clipforge
from clipforge.demo.queries import K, load_queries, score_queries
from clipforge.eval.templates import get_templates
from clipforge.eval.zeroshot import class_embeddings
from clipforge.index.search import Searcher
from clipforge.utils.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
WAYS = ("as typed", "plain", "emoji", "drawing", "openai")


def precision_by_way(run: Path) -> dict[str, float]:
    """Mean precision@K of the queries for each way of embedding them, scored by the demo's own scorer."""
    pipeline = clipforge.load(run / "train" / "final")
    searcher = Searcher.open(run / "index", pipeline)
    queries = load_queries("")

    def search_for(way: str) -> Callable[[str, int], list[str]]:
        def search(text: str, k: int) -> list[str]:
            if way == "as typed":
                vector = searcher.embed_texts([text])
            else:
                vector = class_embeddings(pipeline, [text], get_templates(way)).numpy()
            return [hit.caption or "" for hit in searcher.search_vector(vector, k)]

        return search

    return {way: score_queries(search_for(way), queries, K)["mean"] for way in WAYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", default="runs/bench-demo")
    args = parser.parse_args()
    per_seed = {str(s): precision_by_way(Path(args.root) / f"seed{s}") for s in args.seeds}
    lines = [f"# Demo search: precision@{K} of the 20 fixed queries by how the query is embedded", "",
             "| query embedded | " + " | ".join(f"seed {s}" for s in per_seed) + " |",
             "|---|" + "---|" * len(per_seed)]  # fmt: skip
    for way in WAYS:
        lines.append(f"| {way} | " + " | ".join(f"{100 * r[way]:.1f}%" for r in per_seed.values()) + " |")
    results = ROOT / "benchmarks" / "results"
    atomic_write_text(results / "demo_query_prompts.json", json.dumps({"k": K, "per_seed": per_seed}, indent=1) + "\n")
    atomic_write_text(results / "demo_query_prompts.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
