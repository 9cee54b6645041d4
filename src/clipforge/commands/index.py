"""Build, update or prune a FAISS index over an embedding directory.

Up to 200k vectors the index is exact (inner product); above, IVF with nlist ~ 4 sqrt(N) and the smallest
nprobe reaching target_recall recall@10 against exact search on a sample (both printed). The index
directory records the checkpoint that made the vectors, so search and serve embed queries the same way.

examples:
  clipforge index runs/photos-emb runs/photos-index
  clipforge index runs/photos-emb runs/photos-index --add          # add new ids, drop removed ones
  clipforge index out=runs/photos-index --delete 12,40             # delete ids
  clipforge index runs/big-emb runs/big-index kind=ivf quant=pq    # IVF + product quantization

Keys are the fields of clipforge.index.config.IndexConfig: embeddings, out, kind (auto, flat, ivf), quant
(none, sq8, pq), nlist, nprobe, m, target_recall, recall_sample, seed. A build writes the resolved config
to OUT/index_config.yaml; --add and --delete change an existing index in place.
"""

from __future__ import annotations

import argparse

from clipforge.commands.config_args import add_config_arguments, print_config, resolve_args
from clipforge.errors import UserError
from clipforge.index.config import IndexConfig

POSITIONALS = ("embeddings", "out")
RETIRED = {
    "--out": "out={}", "--kind": "kind={}", "--quant": "quant={}", "--nlist": "nlist={}", "--nprobe": "nprobe={}",
    "--m": "m={}", "--target-recall": "target_recall={}", "--recall-sample": "recall_sample={}",
    "--seed": "seed={}",
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, POSITIONALS)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--add", action="store_true", help="update the index in OUT: add new ids, drop gone ones")
    action.add_argument("--delete", metavar="IDS", default=None, help="comma-separated ids to delete from OUT")


def run(args: argparse.Namespace) -> int:
    cfg = resolve_args(IndexConfig, args, POSITIONALS)
    if args.print_config:
        print_config(cfg)
        return 0
    from rich.console import Console  # deferred with the job: `clipforge --help` stays instant

    from clipforge.index import jobs  # deferred: imports torch and faiss

    console = Console()
    if args.delete is not None:
        try:
            ids = [int(x) for x in args.delete.split(",") if x.strip()]
        except ValueError as exc:
            raise UserError(f"--delete takes comma-separated integer ids, got {args.delete!r}") from exc
        if not cfg.out:
            raise UserError("--delete needs the index directory", hint="clipforge index out=INDEX_DIR --delete IDS")
        change = jobs.delete_from_index(cfg.out, ids)
        console.print(f"deleted {change.removed} of {len(ids)} ids; {change.store.index.ntotal} vectors remain")
        return 0
    if args.add:
        change = jobs.update_index(cfg)
        store = change.store
        console.print(f"added {change.added}, removed {change.removed}; {store.index.ntotal} vectors indexed")
        trained = store.manifest.get("trained_on", store.index.ntotal)
        if store.params.kind == "ivf" and store.index.ntotal > 4 * trained:
            console.print(f"[yellow]the IVF index was trained on {trained} vectors and now holds "
                          f"{store.index.ntotal}: rebuild it (without --add) for balanced lists[/yellow]")
        return 0
    report = jobs.run_index(cfg).report
    assert report is not None  # a full build always reports
    p = report.params
    desc = "exact inner product (Flat)" if p["kind"] == "flat" else (
        f"IVF nlist={p['nlist']} nprobe={p['nprobe']} quant={p['quant']}" + (f" m={p['m']}" if p["m"] else ""))
    console.print(f"indexed {report.count} vectors: {desc}, built in {report.build_seconds:.1f}s")
    if report.recall_curve:
        curve = ", ".join(f"nprobe {n}: {r:.3f}" for n, r in report.recall_curve.items())
        console.print(f"recall@10 vs exact ({cfg.recall_sample} sampled queries): {curve}")
    console.print(f"recall@10 vs exact search: {report.recall_at_10:.3f}; saved {cfg.out}")
    return 0
