"""Hardening figures: what hostile or careless input costs a clipforge server and `clipforge embed`.

Runs `clipforge serve` as a separate process (so its memory and temp files are its own) and measures:
  - a 300 MB multipart upload sent with Transfer-Encoding: chunked (no Content-Length): the status, the bytes
    the server's temp directory held at its peak (read from /proc/PID/fd: tempfile's files are unlinked), and
    how much the client had sent when the answer came;
  - a 12500 x 12500 RGBA PNG (156 Mpx, ~1 MB, under Pillow's own bomb limit) on POST /search, alone and two at
    once: status and the server's peak RSS (VmHWM) over its idle RSS;
  - four concurrent 36 Mpx PNGs (just under the 40 Mpx budget): all decoded, peak RSS bounded by the decode slots;
  - POST /classify with 1,000 labels of 1,000 characters, and a foreign Host header;
  - `clipforge embed` over a folder holding the 156 Mpx PNG: peak RSS of the process and the skip count.
With --unbounded it also lifts the budget (--max-pixels 200000000) to show what the budget prevents.
Writes benchmarks/results/hardening.json and hardening.md.

    PYTHONPATH=src python benchmarks/hardening.py               # ~2 minutes on 2 shared cores
    PYTHONPATH=src python benchmarks/hardening.py --unbounded   # + the budget lifted (needs ~8 GB free)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

import httpx

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


def write_png(path: Path, width: int, height: int) -> Path:
    """An RGBA PNG written row by row (constant memory): a few colour bands, which deflate to ~1/600."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)))
        rows = []
        for y in range(height):
            band = bytes([(y * 7) % 256, 120, 200, 255])
            rows.append(comp.compress(b"\0" + band * width))
            if len(rows) > 256:
                f.write(chunk(b"IDAT", b"".join(rows)))
                rows = []
        rows.append(comp.flush())
        f.write(chunk(b"IDAT", b"".join(rows)) + chunk(b"IEND", b""))
    return path


def setup(tmp: Path) -> dict[str, Path]:
    """A random test-vit checkpoint, 6 small images, their embeddings and index (through the CLI)."""
    import torch
    from PIL import Image

    from clipforge.checkpoint import PipelineConfig, save_checkpoint
    from clipforge.cli import main
    from clipforge.data.config import PreprocessConfig
    from clipforge.model.clip import CLIP
    from clipforge.model.registry import get_config
    from clipforge.text.config import TokenizerConfig

    cfg = get_config("test-vit")
    torch.manual_seed(0)
    ckpt = save_checkpoint(CLIP(cfg), PipelineConfig(
        model=cfg, tokenizer=TokenizerConfig(kind="openai", context_length=cfg.text.context_length),
        preprocess=PreprocessConfig(image_size=cfg.vision.image_size)), tmp / "ckpt")
    col = tmp / "col"
    col.mkdir()
    for i in range(6):
        Image.new("RGB", (64, 64), (40 * i, 100, 200 - 30 * i)).save(col / f"img{i}.png")
    assert main(["embed", str(ckpt), str(col), str(tmp / "emb"), "workers=0"]) == 0
    assert main(["index", str(tmp / "emb"), str(tmp / "idx")]) == 0
    return {"ckpt": ckpt, "col": col, "idx": tmp / "idx"}


class Watch:
    """Samples a process every 5 ms: RSS, and bytes of its open files under ``temp_root``; peaks kept."""

    def __init__(self, pid: int, temp_root: str | None = None) -> None:
        self.pid, self.temp_root = pid, temp_root
        self.peak_temp = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                for fd in os.listdir(f"/proc/{self.pid}/fd"):
                    try:
                        if self.temp_root and os.readlink(f"/proc/{self.pid}/fd/{fd}").startswith(self.temp_root):
                            total += os.stat(f"/proc/{self.pid}/fd/{fd}").st_size
                    except OSError:
                        continue
            except OSError:
                return
            self.peak_temp = max(self.peak_temp, total)
            time.sleep(0.005)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Server:
    """`clipforge serve` in its own process, with its own temp directory."""

    def __init__(self, idx: Path, tmp: Path, *extra: str) -> None:
        self.temp = tmp / f"server-tmp-{time.time_ns()}"
        self.temp.mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {**os.environ, "TMPDIR": str(self.temp), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "clipforge", "serve", "--index", str(idx),
                                      "--port", str(self.port), *extra], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        self.watch = Watch(self.proc.pid, str(self.temp))

    def rss(self) -> int:
        return self.watch.status("VmRSS")

    def peak_rss(self) -> int:
        return self.watch.status("VmHWM")

    def reset_peak(self) -> None:
        """Reset VmHWM to the current RSS (Linux: writing 5 to clear_refs), so each measurement starts fresh."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def chunked_upload(port: int, total: int, chunk: int = 1 * MB) -> dict[str, object]:
    """POST /search a multipart file of ``total`` bytes with Transfer-Encoding: chunked, as curl -H does."""
    boundary = "benchboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", port))
    started = time.perf_counter()
    sock.sendall((f"POST /search HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode())
    payload, sent = os.urandom(chunk), 0
    try:
        for piece in [head] + [payload] * (total // chunk):
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
        else:
            tail = f"\r\n--{boundary}--\r\n".encode()
            sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(60)
    reply = b""
    try:
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    return {"status": int(reply.split(b" ", 2)[1]) if reply else 0, "sent_mb": round(sent / MB, 1),
            "seconds": round(time.perf_counter() - started, 2),
            "body": reply.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")[:200]}


def post_images(base: str, paths: list[Path], url: str = "/search") -> list[dict[str, object]]:
    """POST each file at the same time (one thread each); status, seconds and error per request."""
    out: list[dict[str, object]] = [{} for _ in paths]

    def one(i: int) -> None:
        started = time.perf_counter()
        with httpx.Client(timeout=600) as http:
            r = http.post(base + url, files={"image": (paths[i].name, paths[i].read_bytes(), "image/png")},
                          params={"k": 1})
        out[i] = {"status": r.status_code, "seconds": round(time.perf_counter() - started, 2),
                  "error": r.json().get("error", "") if r.status_code != 200 else ""}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def server_figures(idx: Path, tmp: Path, big: Path, near: Path, col: Path, *extra: str) -> dict[str, object]:
    server = Server(idx, tmp, *extra)
    res: dict[str, object] = {"idle_rss_mb": round(server.rss() / MB, 1)}
    try:
        with server.watch:
            res["chunked_300mb"] = {**chunked_upload(server.port, 300 * MB),
                                    "peak_temp_bytes": server.watch.peak_temp}
        for name, files in (("png_156mpx", [big]), ("png_156mpx_x2", [big, big]), ("png_36mpx_x4", [near] * 4)):
            server.reset_peak()
            before = server.rss()
            replies = post_images(server.base, files)
            res[name] = {"replies": replies, "rss_before_mb": round(before / MB, 1),
                         "peak_rss_mb": round(server.peak_rss() / MB, 1),
                         "peak_over_before_mb": round((server.peak_rss() - before) / MB, 1)}
        small = col / "img0.png"
        with httpx.Client(base_url=server.base, timeout=600) as http:
            for name, labels in (("classify_1000x1000", ["x" * 999 + str(i % 10) for i in range(1000)]),
                                 ("classify_100x200", [f"{i:03d}" + "y" * 197 for i in range(100)])):
                started = time.perf_counter()
                r = http.post("/classify", files={"image": ("a.png", small.read_bytes(), "image/png")},
                              data={"labels": ",".join(labels)})
                res[name] = {"status": r.status_code, "seconds": round(time.perf_counter() - started, 3),
                             "error": r.json().get("error", "") if r.status_code != 200 else ""}
            r = http.get("/health", headers={"host": "rebind.example"})
            res["foreign_host"] = {"status": r.status_code, "error": r.json().get("error", "")}
    finally:
        server.close()
    return res


def embed_figures(ckpt: Path, folder: Path, out: Path, *extra: str) -> dict[str, object]:
    """`clipforge embed` in a child process: its peak RSS (wait4's ru_maxrss) and what it skipped."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "clipforge", "embed", str(ckpt), str(folder), str(out),
                             "workers=0", *extra], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    manifest = json.loads((out / "embed.json").read_text()) if (out / "embed.json").is_file() else {}
    return {"exit": os.waitstatus_to_exitcode(status), "peak_rss_mb": round(usage.ru_maxrss * 1024 / MB, 1),
            "seconds": round(time.perf_counter() - started, 1), "embedded": manifest.get("count"),
            "skipped": manifest.get("skipped")}


def markdown(r: dict[str, object]) -> str:
    b = r["bounded"]
    lines = ["# Hardening figures", "",
             f"Machine: {r['machine']} (shared with other jobs: times are indicative; bytes and RSS are not "
             f"timing-sensitive). Command: `PYTHONPATH=src python benchmarks/hardening.py"
             f"{' --unbounded' if 'unbounded' in r else ''}`.", "",
             "| case | result |", "|---|---|"]
    c = b["chunked_300mb"]
    lines.append(f"| 300 MB chunked upload (no Content-Length) | {c['status']}, peak temp bytes "
                 f"{c['peak_temp_bytes']:,}, client had sent {c['sent_mb']} MB when the answer came |")
    for key, label in (("png_156mpx", "12500x12500 PNG (156 Mpx)"), ("png_156mpx_x2", "two of them at once"),
                       ("png_36mpx_x4", "four 6000x6000 PNGs (36 Mpx) at once")):
        x = b[key]
        statuses = ", ".join(str(rep["status"]) for rep in x["replies"])
        lines.append(f"| {label} | {statuses}; server RSS {x['rss_before_mb']} -> peak {x['peak_rss_mb']} MB "
                     f"(+{x['peak_over_before_mb']} MB) |")
    for key, label in (("classify_1000x1000", "/classify 1,000 labels x 1,000 chars"),
                       ("classify_100x200", "/classify 100 labels x 200 chars (the caps)")):
        x = b[key]
        lines.append(f"| {label} | {x['status']} in {x['seconds']} s |")
    lines.append(f"| Host: rebind.example | {b['foreign_host']['status']} |")
    e = r["embed"]
    lines.append(f"| clipforge embed, folder with the 156 Mpx PNG + 6 small | exit {e['exit']}, peak RSS "
                 f"{e['peak_rss_mb']} MB, embedded {e['embedded']}, skipped {e['skipped']} |")
    e = r["embed_small_only"]
    lines.append(f"| clipforge embed, the 6 small images only (baseline) | peak RSS {e['peak_rss_mb']} MB |")
    if "unbounded" in r:
        u = r["unbounded"]
        lines.append(f"| budget lifted (--max-pixels 200000000): the 156 Mpx PNG | "
                     f"{u['server']['png_156mpx']['replies'][0]['status']}, server peak "
                     f"+{u['server']['png_156mpx']['peak_over_before_mb']} MB in "
                     f"{u['server']['png_156mpx']['replies'][0]['seconds']} s |")
        lines.append(f"| budget lifted: clipforge embed of that folder | peak RSS {u['embed']['peak_rss_mb']} MB, "
                     f"embedded {u['embed']['embedded']} |")
    lines += ["", "Error bodies:", ""]
    for key in ("png_156mpx", "classify_1000x1000", "foreign_host"):
        x = b[key]
        err = x["replies"][0]["error"] if "replies" in x else x["error"]
        lines.append(f"- {key}: `{err}`")
    lines.append(f"- chunked_300mb: `{c['body']}`")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unbounded", action="store_true", help="also measure with the pixel budget lifted")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hardening"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        paths = setup(tmp)
        big = write_png(tmp / "big.png", 12500, 12500)
        near = write_png(tmp / "near.png", 6000, 6000)
        result: dict[str, object] = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                                     "png_156mpx_bytes": big.stat().st_size, "png_36mpx_bytes": near.stat().st_size}
        result["bounded"] = server_figures(paths["idx"], tmp, big, near, paths["col"])
        mixed = tmp / "mixed"
        mixed.mkdir()
        for p in [*paths["col"].iterdir(), big]:
            (mixed / p.name).write_bytes(p.read_bytes())
        result["embed"] = embed_figures(paths["ckpt"], mixed, tmp / "emb-mixed")
        result["embed_small_only"] = embed_figures(paths["ckpt"], paths["col"], tmp / "emb-small")
        if args.unbounded:
            server = Server(paths["idx"], tmp, "--max-pixels", "200000000")
            try:
                server.reset_peak()
                before = server.rss()
                replies = post_images(server.base, [big])
                unbounded = {"png_156mpx": {"replies": replies,
                                            "peak_over_before_mb": round((server.peak_rss() - before) / MB, 1)}}
            finally:
                server.close()
            result["unbounded"] = {"server": unbounded, "embed": embed_figures(
                paths["ckpt"], mixed, tmp / "emb-unbounded", "max_pixels=200000000")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
