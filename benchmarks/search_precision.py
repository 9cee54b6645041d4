"""Text-search serving by precision: HTTP GET /search over an IVF index, the query model in fp32 and in a faster
precision, side by side.

    PYTHONPATH=src python benchmarks/search_precision.py                       # 1M x 512, ViT-B/32 text tower
    PYTHONPATH=src python benchmarks/search_precision.py --n 20000 --model test-vit --burst-seconds 2   # quick

Unlike benchmarks/search.py (a tiny query model, so the index dominates), the query is embedded by a
ViT-B/32-sized text tower (random weights: speed does not depend on their values), which is most of a
query's time on a CPU. Two servers (one per precision) share one index; short load bursts alternate between
them, so other load on the machine hits both alike. Latency is per request as the client sees it.
Writes benchmarks/results/search_precision.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # serve_in_thread
sys.path.insert(0, str(ROOT / "benchmarks"))  # clustered vectors and the HTTP load loop of search.py

from search import clustered, http_load  # noqa: E402
from search_helpers import serve_in_thread  # noqa: E402

from clipforge.checkpoint import PipelineConfig, save_checkpoint  # noqa: E402
from clipforge.data.config import PreprocessConfig  # noqa: E402
from clipforge.index.build import Embeddings, build_store  # noqa: E402
from clipforge.index.manifest import checkpoint_fingerprint  # noqa: E402
from clipforge.index.search import Searcher  # noqa: E402
from clipforge.model.clip import CLIP  # noqa: E402
from clipforge.model.registry import get_config  # noqa: E402
from clipforge.pipeline import load  # noqa: E402
from clipforge.serve.app import create_app  # noqa: E402
from clipforge.text.config import TokenizerConfig  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--model", default="ViT-B-32-quickgelu")
    parser.add_argument("--precisions", nargs=2, default=["fp32", "int8"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--burst-seconds", type=float, default=5.0)
    parser.add_argument("--http-threads", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the query model")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search_precision"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = get_config(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="clipforge-bench-"))
    torch.manual_seed(0)
    tok = TokenizerConfig(kind="openai", context_length=cfg.text.context_length)
    ckpt = save_checkpoint(CLIP(cfg), PipelineConfig(cfg, tok, PreprocessConfig(image_size=cfg.vision.image_size)),
                           tmp / "ckpt")  # fmt: skip
    x = clustered(args.n, cfg.embed_dim, clusters=max(10, args.n // 100), noise=1.0)
    meta = {"id": list(range(args.n)), "path": [f"img/{i:07d}.jpg" for i in range(args.n)], "width": [0] * args.n,
            "height": [0] * args.n, "sha256": [""] * args.n, "caption": [None] * args.n}  # fmt: skip
    emb = Embeddings(x, np.zeros((0, cfg.embed_dim), np.float32), meta, checkpoint_fingerprint(ckpt),
                     {"root": str(tmp), "kind": "folder"})  # fmt: skip
    store, report = build_store(emb, kind="ivf" if args.n > 20_000 else "auto", recall_sample=300)
    print(f"index {report.params} built in {report.build_seconds:.0f} s", flush=True)
    servers = {}
    for p in args.precisions:
        pipeline = load(ckpt, precision=p)
        servers[pipeline.precision] = serve_in_thread(create_app(Searcher(store, pipeline)))
    runs: dict[str, list[dict]] = {p: [] for p in servers}
    try:
        for r in range(args.rounds):
            for p, (base, _) in servers.items():
                runs[p].append(http_load(base, args.burst_seconds, args.http_threads))
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{p} {runs[p][-1]['requests_per_s']} req/s"
                                                              for p in runs), flush=True)  # fmt: skip
    finally:
        for _, stop in servers.values():
            stop()
    rows = {}
    for p, bursts in runs.items():
        # per-burst medians of p50 and p99 (the bursts alternate, so each precision sees the same load pattern)
        rows[p] = {"requests": sum(b["requests"] for b in bursts), "errors": sum(b["errors"] for b in bursts),
                   "requests_per_s": float(np.median([b["requests_per_s"] for b in bursts])),
                   "p50_ms": float(np.median([b["p50_ms"] for b in bursts])),
                   "p99_ms": float(np.median([b["p99_ms"] for b in bursts])), "bursts": bursts}  # fmt: skip
    fast, base = args.precisions[1], args.precisions[0]
    result = {
        "n": args.n, "model": args.model, "index": report.params, "build_s": round(report.build_seconds, 1),
        "precisions": rows, "http_threads": args.http_threads, "torch_threads": args.threads,
        "ratio_requests_per_s": rows[fast]["requests_per_s"] / rows[base]["requests_per_s"],
        "ratio_p50": rows[fast]["p50_ms"] / rows[base]["p50_ms"],
        "machine": f"{platform.machine()}, 2 cores shared with other jobs", "torch": torch.__version__,
    }  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Text search over HTTP by precision: {args.n:,} vectors, {args.model} text tower", "",
             f"Index {report.params}; {args.http_threads} client threads, {args.rounds} alternating bursts of "
             f"{args.burst_seconds:g} s per precision; {result['machine']}.", "",
             "| precision | req/s | p50 ms | p99 ms | requests | errors |", "|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {p} | {r['requests_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests']} | "
              f"{r['errors']} |" for p, r in rows.items()]  # fmt: skip
    lines += ["", f"{fast} vs {base}: {result['ratio_requests_per_s']:.2f}x req/s, p50 x{result['ratio_p50']:.2f}."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
