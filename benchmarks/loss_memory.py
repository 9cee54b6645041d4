"""Peak memory of the plain vs streamed (chunked) InfoNCE at a large global batch, one rank's view.

A rank with ``local_loss`` holds M = global/W rows against all N = global gathered columns.  Each
configuration runs forward + backward in its own subprocess (so peaks do not mix) and reports the peak
resident set size above the baseline taken once the inputs exist (``ru_maxrss``; the allocator may keep
freed pages, which only makes a peak larger).  The full N x N figure is stated analytically.

    PYTHONPATH=src python benchmarks/loss_memory.py [--global-batch 65536 --world 8 --dim 512]

Writes benchmarks/results/loss_memory.json and .md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

GIB = 2**30


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _one(mode: str, rows: int, cols: int, dim: int, chunk: int) -> dict:
    """One forward + backward in this process; prints a JSON line with its peak memory."""
    import torch
    import torch.nn.functional as F

    from clipforge.loss.contrastive import infonce_rows, infonce_rows_streamed

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    k_img, k_txt = (F.normalize(torch.randn(cols, dim, generator=g), dim=-1).requires_grad_() for _ in range(2))
    q_img, q_txt = (F.normalize(torch.randn(rows, dim, generator=g), dim=-1).requires_grad_() for _ in range(2))
    scale = torch.tensor(100.0, requires_grad=True)
    offset = 0  # which columns are the positives does not change the memory
    base = _rss_bytes()
    t0 = time.perf_counter()
    if mode == "plain":
        loss = infonce_rows(q_img, q_txt, k_img, k_txt, scale, offset, rows)
    else:
        loss = infonce_rows_streamed(q_img, q_txt, k_img, k_txt, scale, offset, rows, chunk)
    loss.backward()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {"mode": mode, "chunk": chunk, "rows": rows, "cols": cols, "dim": dim, "loss": loss.item(),
            "baseline_gib": base / GIB, "peak_gib": peak / GIB, "working_gib": (peak - base) / GIB,
            "seconds": seconds}


def _run_child(mode: str, rows: int, cols: int, dim: int, chunk: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(rows), str(cols), str(dim), str(chunk)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, rows, cols, dim, chunk = sys.argv[2], *map(int, sys.argv[3:7])
        print(json.dumps(_one(mode, rows, cols, dim, chunk)))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--global-batch", type=int, default=65536)
    p.add_argument("--world", type=int, default=8)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--chunks", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "loss_memory"))
    args = p.parse_args()

    from clipforge.utils.io import atomic_write_text

    n, rows = args.global_batch, args.global_batch // args.world
    runs = [_run_child("plain", rows, n, args.dim, 0)]
    runs += [_run_child("streamed", rows, n, args.dim, c) for c in args.chunks]
    plain = runs[0]
    for r in runs:
        r["loss_diff_vs_plain"] = abs(r["loss"] - plain["loss"])
        r["working_ratio_vs_plain"] = r["working_gib"] / plain["working_gib"]
        r["time_ratio_vs_plain"] = r["seconds"] / plain["seconds"]
    matrix_gib = rows * n * 4 / GIB  # one fp32 (M, N) logit matrix
    full_gib = n * n * 4 / GIB  # one fp32 (N, N) logit matrix
    # The plain loss keeps about (working / matrix) matrices' worth; at M = N it needs that many N x N ones.
    matrices = plain["working_gib"] / matrix_gib
    result = {
        "global_batch": n, "world": args.world, "rows_per_rank": rows, "dim": args.dim, "runs": runs,
        "one_local_matrix_gib": matrix_gib, "one_full_matrix_gib": full_gib,
        "plain_matrices_kept": matrices, "plain_full_matrix_estimate_gib": matrices * full_gib,
    }
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    lines = [
        f"# InfoNCE memory: one rank of W={args.world}, {rows:,} rows x {n:,} columns, D={args.dim}, fp32, "
        "forward + backward",
        "",
        "| variant | chunk | peak RSS GiB | above inputs GiB | vs plain | time s | time vs plain | loss diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(f"| {r['mode']} | {r['chunk'] or '-'} | {r['peak_gib']:.2f} | {r['working_gib']:.2f} | "
                     f"{r['working_ratio_vs_plain']:.3f} | {r['seconds']:.1f} | {r['time_ratio_vs_plain']:.2f} | "
                     f"{r['loss_diff_vs_plain']:.1e} |")
    lines += [
        "",
        f"One fp32 {rows:,} x {n:,} logit matrix is {matrix_gib:.1f} GiB; the plain loss kept "
        f"{matrices:.1f} such matrices' worth at its peak.",
        f"Full global matrix (M = N = {n:,}): one fp32 matrix is {full_gib:.0f} GiB, so the plain loss would "
        f"need about {matrices * full_gib:.0f} GiB; the streamed loss needs O(N x chunk) plus the (N, D) features "
        "and their gradients.",
        "",
    ]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
