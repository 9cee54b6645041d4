"""Hardening history: the same hostile inputs against the source trees of earlier commits and the working tree.

benchmarks/hardening.py measures what hostile input costs the current server; this benchmark measures the same
attacks on the trees before each fix too (extracted from git), side by side in one run, so the "before" figures
are measured rather than quoted.

Each figure is measured on a real `clipforge serve` process (loopback, a tiny random model and index built by the
same source tree), from outside: bytes its temporary files held (/proc/PID/fd), bytes it wrote (/proc/PID/io
wchar) and its peak RSS (/proc/PID/status VmHWM, reset through clear_refs before each request).

  1. a 300 MB upload sent with Transfer-Encoding: chunked (no Content-Length) to POST /search
  2. a 12500 x 12500 RGBA PNG (156 Mpx, ~0.6 MB on disk, under Pillow's own bomb limit) to POST /search,
     alone and two at once
  3. POST /classify with 1,000 labels of 1,000 characters
  4. a request whose Host header names another site (DNS rebinding)
  5. `clipforge embed` over a folder holding that PNG beside 4 small images (peak RSS, what was skipped)

With --before REF (repeatable) every figure is measured for the source tree of git commit REF too (extracted with
git archive), side by side in the same run, so the machine's load affects all trees alike.

    python benchmarks/hardening_history.py                     # the working tree only, ~1 min
    python benchmarks/hardening_history.py --before afd84c6~1 --before c67d5d8
        # also before the pixel budget (afd84c6) and before the server guards (d2d3e92): ~5 min, ~4 GB RAM briefly

Writes benchmarks/results/hardening_history.json and hardening_history.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
BIG_SIDE = 12500  # 156.25 Mpx: under Pillow's 178 Mpx DecompressionBombError, far over clipforge's 40 Mpx budget


def bomb_png(path: Path, side: int = BIG_SIDE) -> int:
    """Write a side x side RGBA PNG of one colour row by row (the file is ~0.6 MB; this process never holds the
    pixels); returns its size in bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" + bytes([200, 30, 30, 255]) * side  # filter byte "none", then the pixels
    packer = zlib.compressobj(9)
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)))
        data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
        f.write(chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path.stat().st_size


# ---- run inside a subprocess whose PYTHONPATH is the source tree under test --------------------------------------

def setup_demo(work: Path) -> None:
    """A random test-vit checkpoint, 6 small images, their embeddings and an exact index (built by the CLI)."""
    # Deferred: this function runs in a child process against the tree under test, not the benchmark's own.
    import torch
    from PIL import Image

    from clipforge.checkpoint import save_checkpoint
    from clipforge.data.config import PreprocessConfig
    from clipforge.model.clip import CLIP
    from clipforge.model.registry import get_config
    from clipforge.text.config import TokenizerConfig

    try:
        from clipforge.checkpoint import PipelineConfig
    except ImportError:  # older trees kept it beside load()
        from clipforge.pipeline import PipelineConfig  # type: ignore[attr-defined,no-redef]

    cfg = get_config("test-vit")
    torch.manual_seed(0)
    config = PipelineConfig(model=cfg, tokenizer=TokenizerConfig(kind="openai", context_length=cfg.text.context_length),
                            preprocess=PreprocessConfig(image_size=cfg.vision.image_size))
    save_checkpoint(CLIP(cfg), config, work / "ckpt")
    (work / "col").mkdir()
    for i in range(6):
        Image.new("RGB", (48, 48), (40 * i, 255 - 40 * i, 90)).save(work / "col" / f"img{i}.png")
    embed_cli(str(work / "ckpt"), str(work / "col"), str(work / "emb"))
    assert cli(["index", str(work / "emb"), str(work / "idx")], ["index", str(work / "emb"), "--out", str(work / "idx")])


def cli(*argvs: list[str]) -> bool:
    """Run the first of ``argvs`` the tree's CLI accepts (key=value today, --flags in older trees)."""
    from clipforge.cli import main  # deferred: runs against the tree under test

    for argv in argvs:
        try:
            if main(argv) == 0:
                return True
        except SystemExit:
            continue  # argparse refused this spelling
    return False


def embed_cli(ckpt: str, src: str, out: str) -> int:
    ok = cli(["embed", ckpt, src, out, "workers=0"], ["embed", ckpt, src, "--out", out, "--workers", "0"])
    return 0 if ok else 2


def run_embed(ckpt: str, src: str, out: str) -> None:
    """`clipforge embed` in this process; prints its exit code and this process's peak RSS as JSON."""
    rc = embed_cli(ckpt, src, out)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rc": rc, "peak_rss_mb": round(peak_kb / 1024, 1)}))


# ---- the measuring side --------------------------------------------------------------------------------------------

def child_env(tree: Path, tmpdir: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": "1"}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)  # where the server's multipart parser spools uploads
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`clipforge serve` of ``tree`` in a child process, with its /proc counters at hand."""

    def __init__(self, tree: Path, index: Path, spool: Path) -> None:
        self.spool, self.port = spool, free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clipforge", "serve", "--index", str(index), "--port", str(self.port)],
            env=child_env(tree, spool), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            status, _, _ = http(self.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return status == 200
        except OSError:
            return False

    def status(self, key: str) -> int:
        """A /proc/PID/status figure in bytes (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS

    def written(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
        raise KeyError("wchar")

    def temp_bytes(self) -> int:
        """Bytes held by the server's open files under its spool directory (spooled uploads are unlinked at
        creation, so only /proc/PID/fd sees them)."""
        total = 0
        fd_dir = f"/proc/{self.proc.pid}/fd"
        for fd in os.listdir(fd_dir):
            try:
                if os.readlink(f"{fd_dir}/{fd}").startswith(str(self.spool)):
                    total += os.stat(f"{fd_dir}/{fd}").st_size
            except OSError:
                continue  # closed between listing and reading
        return total

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Peak:
    """Samples ``probe()`` every 5 ms while the with-block runs; ``value`` is the largest sample."""

    def __init__(self, probe) -> None:
        self.probe, self.value, self._stop = probe, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):  # the process may close a file while it is being read
                self.value = max(self.value, self.probe())
            time.sleep(0.005)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def http(port: int, request: bytes, timeout: float = 120) -> tuple[int, bytes, float]:
    """Send one raw HTTP request; returns (status, body, seconds)."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = read_reply(sock)
    return status_of(reply), reply.split(b"\r\n\r\n", 1)[-1], time.perf_counter() - started


def read_reply(sock: socket.socket) -> bytes:
    reply = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
            head, _, body = reply.partition(b"\r\n\r\n")
            length = [int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                break
    except (ConnectionResetError, TimeoutError):
        pass
    return reply


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0


def multipart(fields: dict[str, bytes], files: dict[str, tuple[str, bytes]], boundary: str = "hardening") -> bytes:
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode() + v + b"\r\n"
             for k, v in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
              f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
              for k, (name, data) in files.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def post(port: int, path: str, body: bytes, host: str = "127.0.0.1") -> tuple[int, bytes, float]:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=hardening\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return http(port, head + body)


def chunked_upload(server: Server, total: int, chunk: int = MB) -> dict[str, float]:
    """POST /search with a ``total``-byte image part, chunked, as curl -H 'Transfer-Encoding: chunked' does; stop
    sending as soon as the server answers (as a client reading responses would)."""
    head = (b'--hardening\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")
    payload = b"\x89PNG\r\n\x1a\n" + b"\0" * (chunk - 8)
    written0, sent, started = server.written(), 0, time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=300)
    with Peak(server.temp_bytes) as disk:
        sock.sendall(b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: multipart/form-data; boundary=hardening\r\n\r\n")
        try:
            for piece in [head] + [payload] * (total // chunk):
                if select.select([sock], [], [], 0)[0]:
                    break  # answered early
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece) - (len(head) if piece is head else 0)
            else:
                tail = b"\r\n--hardening--\r\n"
                sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed after answering; the answer is in the receive buffer
        reply = read_reply(sock)
    sock.close()
    return {"status": status_of(reply), "upload_mb": total / MB, "client_sent_mb": round(sent / MB, 1),
            "peak_temp_file_mb": round(disk.value / MB, 2),
            "server_wrote_mb": round((server.written() - written0) / MB, 2),
            "seconds": round(time.perf_counter() - started, 2)}


def big_png_uploads(server: Server, png: bytes, concurrent: int) -> dict[str, float]:
    """``concurrent`` simultaneous POST /search of the 156 Mpx PNG: statuses, seconds, server RSS before and peak."""
    body = multipart({}, {"image": ("big.png", png)})
    base = server.status("VmRSS")
    server.reset_peak()
    results: list[tuple[int, bytes, float]] = []
    threads = [threading.Thread(target=lambda: results.append(post(server.port, "/search?k=1", body)))
               for _ in range(concurrent)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"concurrent": concurrent, "statuses": sorted(r[0] for r in results),
            "seconds": round(max(r[2] for r in results), 2), "rss_before_mb": round(base / MB),
            "peak_rss_mb": round(server.status("VmHWM") / MB), "error": json_error(results[0][1])}


def json_error(body: bytes) -> str | None:
    try:
        return json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None


def measure_server(tree: Path, work: Path, png: bytes, full: bool) -> dict[str, object]:
    """Every server figure for one source tree (its own demo index, its own server process)."""
    work.mkdir(parents=True)
    subprocess.run([sys.executable, __file__, "_setup", str(work)], env=child_env(tree), check=True,
                   stdout=subprocess.DEVNULL)
    spool = work / "spool"
    spool.mkdir()
    server = Server(tree, work / "idx", spool)
    out: dict[str, object] = {}
    try:
        out["chunked_300mb"] = chunked_upload(server, 300 * MB)
        out["png_156mpx"] = big_png_uploads(server, png, 1)
        if full:
            out["png_156mpx_two"] = big_png_uploads(server, png, 2)
        small = (work / "col" / "img0.png").read_bytes()
        labels = ",".join(f"{i:04d}" + "x" * 995 for i in range(1000)).encode()
        status, body, seconds = post(server.port, "/classify", multipart({"labels": labels},
                                                                         {"image": ("q.png", small)}))
        out["classify_1000x1000"] = {"status": status, "seconds": round(seconds, 2), "error": json_error(body)}
        status, body, _ = http(server.port, b"GET /search?q=cat HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        out["foreign_host"] = {"status": status, "error": json_error(body)}
    finally:
        server.stop()
    return out


def measure_embed(tree: Path, work: Path, png_path: Path) -> dict[str, object]:
    """`clipforge embed` over 4 small images and the 156 Mpx PNG: exit code, peak RSS, what was skipped."""
    col = work / "embed_col"
    col.mkdir()
    for i in range(4):
        (col / f"img{i}.png").write_bytes((work / "col" / f"img{i}.png").read_bytes())
    (col / "big.png").write_bytes(png_path.read_bytes())
    out = work / "embed_out"
    run = subprocess.run([sys.executable, __file__, "_embed", str(work / "ckpt"), str(col), str(out)],
                         env=child_env(tree), capture_output=True, text=True, check=False)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    manifest = json.loads((out / "embed.json").read_text())
    return {**result, "embedded": manifest["count"], "skipped": manifest.get("skipped", {})}


def extract(ref: str, dest: Path) -> Path:
    """The source tree of git commit ``ref`` (src/ only) under ``dest``."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def write_markdown(result: dict[str, object], out: Path) -> None:
    trees = result["trees"]
    md = ["# Hardening history: hostile input against earlier trees and the working tree", "",
          f"Measured {result['date']} on {result['machine']} (a shared 2-core machine: times are indicative, "
          "bytes and RSS are not load-dependent). Command: `" + result["command"] + "`.", "",
          "| figure | " + " | ".join(f"{name} ({info['ref']})" for name, info in trees.items()) + " |",
          "|---|" + "---|" * len(trees)]

    def row(label: str, fn, part: str = "server") -> None:
        md.append(f"| {label} | " + " | ".join(fn(info[part]) for info in trees.values()) + " |")

    row("300 MB chunked upload to /search: status", lambda s: str(s["chunked_300mb"]["status"]))
    row("... bytes the client got to send", lambda s: f"{s['chunked_300mb']['client_sent_mb']} MB")
    row("... peak temp-file bytes on the server", lambda s: f"{s['chunked_300mb']['peak_temp_file_mb']} MB")
    row("... bytes the server wrote (wchar)", lambda s: f"{s['chunked_300mb']['server_wrote_mb']} MB")
    row("12500x12500 PNG (156 Mpx) to /search: status, seconds",
        lambda s: f"{s['png_156mpx']['statuses'][0]}, {s['png_156mpx']['seconds']} s")
    row("... server RSS before -> peak",
        lambda s: f"{s['png_156mpx']['rss_before_mb']} -> {s['png_156mpx']['peak_rss_mb']} MB")
    row("two such PNGs at once: statuses, server RSS peak",
        lambda s: f"{s['png_156mpx_two']['statuses']}, {s['png_156mpx_two']['peak_rss_mb']} MB"
        if "png_156mpx_two" in s else "not run (--full)")
    row("/classify, 1,000 labels of 1,000 characters: status, seconds",
        lambda s: f"{s['classify_1000x1000']['status']}, {s['classify_1000x1000']['seconds']} s")
    row("GET /search with Host: evil.example: status", lambda s: str(s["foreign_host"]["status"]))
    row("`clipforge embed`, 4 small images + the 156 Mpx PNG: exit, peak RSS",
        lambda e: f"{e['rc']}, {e['peak_rss_mb']:.0f} MB", "embed")
    row("... embedded, skipped", lambda e: f"{e['embedded']}, {json.dumps(e['skipped'])}", "embed")
    md.append("")
    for name, info in trees.items():
        errors = {k: v["error"].splitlines()[0] for k, v in info["server"].items()
                  if isinstance(v, dict) and v.get("error")}
        md.append(f"Server answers ({name}): " + "; ".join(f"{k}: \"{v}\"" for k, v in errors.items()))
        md.append("")
    out.with_suffix(".md").write_text("\n".join(md))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_setup":
        setup_demo(Path(sys.argv[2]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_embed":
        run_embed(*sys.argv[2:5])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", action="append", default=[], help="git commit to measure beside the working "
                        "tree (repeatable)")
    parser.add_argument("--full", action="store_true", help="also two 156 Mpx uploads at once (before: ~8 GB RAM)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hardening_history"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        png_path = tmp / "big.png"
        png_size = bomb_png(png_path)
        png = png_path.read_bytes()
        trees = {f"before-{i + 1}": (extract(ref, tmp / f"src-{i}"), ref) for i, ref in enumerate(args.before)}
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False).stdout.strip()
        trees["after"] = (ROOT, f"working tree at {head}")
        result: dict[str, object] = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "command": " ".join(["python benchmarks/hardening_history.py", *(f"--before {r}" for r in args.before)]
                                + (["--full"] if args.full else [])),
            "png_bytes": png_size, "trees": {},
        }
        for name, (tree, ref) in trees.items():
            # Two-at-once only after the fix unless --full: before it costs ~8 GB of RAM.
            server = measure_server(tree, tmp / name, png, full=args.full or name == "after")
            embed = measure_embed(tree, tmp / name, png_path)
            result["trees"][name] = {"ref": ref, "server": server, "embed": embed}  # type: ignore[index]
            print(name, json.dumps(server), json.dumps(embed))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, out)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
