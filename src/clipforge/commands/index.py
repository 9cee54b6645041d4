"""Build, update or prune a FAISS index over an embedding directory.

Up to 200k vectors the index is exact (inner product); above, IVF with nlist ~ 4 sqrt(N) and the smallest
nprobe reaching --target-recall recall@10 against exact search on a sample (both printed). The index
directory records the checkpoint that made the vectors, so search and serve embed queries the same way.

examples:
  clipforge index runs/photos-emb --out runs/photos-index
  clipforge index runs/photos-emb --out runs/photos-index --add      # add new ids, drop removed ones
  clipforge index --out runs/photos-index --delete 12,40             # delete ids
  clipforge index runs/big-emb --out runs/big-index --quant pq       # IVF + product quantization
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("embeddings", nargs="?", help="embedding directory from 'clipforge embed'")
    parser.add_argument("--out", required=True, help="index directory to write (or update)")
    parser.add_argument("--add", action="store_true", help="update an existing index: add new ids, drop gone ones")
    parser.add_argument("--delete", default=None, help="comma-separated ids to delete from the index")
    parser.add_argument("--kind", choices=["auto", "flat", "ivf"], default="auto", help="default: by size")
    parser.add_argument("--quant", choices=["none", "sq8", "pq"], default="none", help="IVF vector codec")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default ~4 sqrt(N))")
    parser.add_argument("--nprobe", type=int, default=None, help="IVF lists probed (default: tuned)")
    parser.add_argument("--m", type=int, default=None, help="PQ bytes per vector (default dim/8)")
    parser.add_argument("--target-recall", type=float, default=0.95, help="recall@10 the tuned nprobe reaches")
    parser.add_argument("--recall-sample", type=int, default=500, help="queries used to measure recall")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from clipforge.errors import UserError
    from clipforge.index.build import build_store, read_embeddings, sync_store
    from clipforge.index.store import load_store

    console = Console()
    if args.delete is not None:
        try:
            ids = [int(x) for x in args.delete.split(",") if x.strip()]
        except ValueError as exc:
            raise UserError(f"--delete takes comma-separated integer ids, got {args.delete!r}") from exc
        store = load_store(args.out)
        removed = store.remove(ids)
        store.save(args.out)
        console.print(f"deleted {removed} of {len(ids)} ids; {store.index.ntotal} vectors remain")
        return 0
    if not args.embeddings:
        raise UserError("give an embedding directory (or --delete IDS)", hint="clipforge index EMB_DIR --out DIR")
    emb = read_embeddings(args.embeddings)
    if args.add:
        store = load_store(args.out)
        added, removed = sync_store(store, emb)
        store.save(args.out)
        console.print(f"added {added}, removed {removed}; {store.index.ntotal} vectors indexed")
        trained = store.manifest.get("trained_on", store.index.ntotal)
        if store.params.kind == "ivf" and store.index.ntotal > 4 * trained:
            console.print(f"[yellow]the IVF index was trained on {trained} vectors and now holds "
                          f"{store.index.ntotal}: rebuild it (without --add) for balanced lists[/yellow]")
        return 0
    store, report = build_store(
        emb, kind=args.kind, quant=args.quant, nlist=args.nlist, nprobe=args.nprobe, m=args.m,
        target_recall=args.target_recall, recall_sample=args.recall_sample, seed=args.seed,
    )
    store.save(args.out)
    p = report.params
    desc = "exact inner product (Flat)" if p["kind"] == "flat" else (
        f"IVF nlist={p['nlist']} nprobe={p['nprobe']} quant={p['quant']}" + (f" m={p['m']}" if p["m"] else ""))
    console.print(f"indexed {report.count} vectors: {desc}, built in {report.build_seconds:.1f}s")
    if report.recall_curve:
        curve = ", ".join(f"nprobe {n}: {r:.3f}" for n, r in report.recall_curve.items())
        console.print(f"recall@10 vs exact ({args.recall_sample} sampled queries): {curve}")
    console.print(f"recall@10 vs exact search: {report.recall_at_10:.3f}; saved {args.out}")
    return 0
