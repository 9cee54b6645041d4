"""The HTTP API and web page over one index (FastAPI; run by ``clipforge serve``).

Endpoints (all JSON unless noted):
  GET  /                      the search page (static/index.html, app.js, app.css; no build step, works offline)
  GET  /health                status, vector count, index kind
  GET  /search?q=TEXT&k=K     text -> image
  POST /search                image -> image (multipart field ``image``; ``k`` as a query parameter)
  GET  /similar/{id}          image -> image for indexed item ``id`` ("more like this", its stored vector)
  The three searches also take ``offset`` (the next page; the answer says whether there is ``more``),
  ``dedup`` (hide results whose cosine to a better-ranked one is at least this) and ``safe`` (hide results
  flagged by the --concepts thresholds; every result then carries ``flagged``): see serve/results.py.
  POST /classify              zero-shot: multipart ``image`` + form field ``labels`` ("cat,dog,car")
  POST /moderate              concept flags for multipart ``image`` (needs ``--concepts``)
  GET  /thumb/{id}            a JPEG thumbnail of indexed item ``id`` (never a user-given path)
  GET  /image/{id}            item ``id`` at full size (re-encoded, at most FULL_SIDE a side: never the raw file)
Errors are ``{"error": message}`` with status 400 (bad input, an image over the pixel budget, a foreign Host
header), 404, 413 (upload over the limit, counted as the bytes arrive), 422 (out-of-range parameters), 503 (every
decode slot busy for DECODE_WAIT_S) or 500 (no traceback: it is logged on the server only).
Model calls run in FastAPI's thread pool (sync endpoints), serialized by the Searcher's lock; image decoding
runs outside that lock but at most ``decode_slots`` at a time, each within the pixel budget, so concurrent
uploads cannot add up to more memory than slots x budget.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException

from clipforge.data.config import DEFAULT_MAX_PIXELS
from clipforge.data.sources import read_bytes
from clipforge.data.transforms import ImageTooLarge, load_image
from clipforge.errors import UserError
from clipforge.index.moderate import Moderator, read_concepts
from clipforge.index.search import MAX_K, Searcher
from clipforge.serve.guard import LOOPBACK_HOSTS, RequestGuard, too_large
from clipforge.serve.results import DEFAULT_DEDUP, MAX_OFFSET, Filters, result_page

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Multipart framing around a 20 MB file is a few hundred bytes; 64 KiB also leaves room for form fields.
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024
THUMB_SIDE = 256
# "Open full size" re-encodes the indexed file (an SVG or a crafted file is never sent as it is); 2,048 px a side
# shows any screen's worth of detail and bounds the work per request.
FULL_SIDE = 2048
THUMB_CACHE = 512
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css", "favicon.svg": "image/svg+xml"}
# Decoding a 40 Mpx image takes ~0.2-0.5 GB for a moment; two at a time keep a small server's memory bounded
# while a second upload still overlaps the first one's model call.
DECODE_SLOTS = 2
DECODE_WAIT_S = 30.0
# /classify runs every label through the text tower under the model lock: 100 labels of <= 200 characters (CLIP
# reads 77 tokens anyway) keep one request well under a second on CPU.
MAX_LABELS = 100
MAX_LABEL_CHARS = 200


class _ThumbCache:
    """A small thread-safe LRU of encoded thumbnails (id -> JPEG bytes)."""

    def __init__(self, size: int) -> None:
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key: int) -> bytes | None:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def put(self, key: int, value: bytes) -> None:
        with self.lock:
            self.items[key] = value
            if len(self.items) > self.size:
                self.items.popitem(last=False)


class _Decoder:
    """Decodes uploads within the pixel budget, at most ``slots`` at a time (the rest wait, then get 503)."""

    def __init__(self, limit: int, max_pixels: int, slots: int) -> None:
        self.limit, self.max_pixels = limit, max_pixels
        self.slots = threading.BoundedSemaphore(slots)

    def __call__(self, upload: UploadFile) -> Any:
        """Decode an uploaded image, enforcing the size limit (413), the pixel budget and a readable format (400)."""
        data = upload.file.read(self.limit + 1)
        if len(data) > self.limit:
            raise HTTPException(413, too_large(self.limit))
        if not data:
            raise HTTPException(400, "the uploaded file is empty")
        if not self.slots.acquire(timeout=DECODE_WAIT_S):
            raise HTTPException(503, "the server is busy decoding other images: retry in a few seconds")
        try:
            return load_image(data, upload.filename or "upload", max_pixels=self.max_pixels)
        except ImageTooLarge as exc:
            raise HTTPException(400, f"image too large: {_one_line(exc)}") from exc
        except UserError as exc:
            raise HTTPException(400, f"not an image: {_one_line(exc)}") from exc
        except Exception as exc:  # any decoder failure is the upload's fault
            raise HTTPException(400, "not an image: the file could not be decoded") from exc
        finally:
            self.slots.release()


def _one_line(exc: UserError) -> str:
    return f"{exc.args[0]} ({exc.hint})" if exc.hint else str(exc.args[0])


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body"))
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
        return JSONResponse({"error": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"error": _one_line(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal server error"}, status_code=500)


def app_for_index(index_dir: str | Path, concepts: str | Path | None = None, device: str = "cpu",
                  precision: str = "fp32", host: str = "127.0.0.1", max_pixels: int = DEFAULT_MAX_PIXELS) -> FastAPI:
    """The app for an index directory: loads the checkpoint the index records (``clipforge serve`` runs this).

    Args:
        index_dir: an index directory from ``clipforge index``.
        concepts: a concepts YAML with thresholds, which enables POST /moderate.
        device: where the query model runs.
        precision: the query model's arithmetic (fp32, bf16, int8, auto; see clipforge.precision).
        host: the address the server binds; a loopback address makes it refuse other Host headers.
        max_pixels: decoding budget per uploaded image (width x height).
    """
    searcher = Searcher.open(index_dir, device=device, precision=precision)
    moderator = None
    if concepts:
        probability = searcher.concept_probabilities if searcher.probability_kind() == "sigmoid" else None
        moderator = Moderator(read_concepts(concepts), searcher.embed_texts, probability)
    allowed = LOOPBACK_HOSTS if host in LOOPBACK_HOSTS else None
    return create_app(searcher, moderator, allowed_hosts=allowed, max_pixels=max_pixels)


def create_app(searcher: Searcher, moderator: Moderator | None = None, max_upload: int = MAX_UPLOAD_BYTES, *,
               allowed_hosts: tuple[str, ...] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
               decode_slots: int = DECODE_SLOTS) -> FastAPI:
    """The FastAPI app serving ``searcher``'s index.

    Args:
        searcher: index + model (``Searcher.open(index_dir)``).
        moderator: concept thresholds for /moderate; without it /moderate answers 400.
        max_upload: largest accepted image upload in bytes (larger: 413, whole bodies are cut at this plus
            form overhead as they arrive).
        allowed_hosts: Host names the server answers (LOOPBACK_HOSTS for a loopback server); None: any.
        max_pixels: decoding budget per uploaded image; larger images get 400 without being decoded.
        decode_slots: how many uploads may be decoded at the same time.
    """
    app = FastAPI(title="clipforge search", docs_url="/docs", redoc_url=None)
    _install_error_handlers(app)
    app.add_middleware(RequestGuard, max_body=max_upload + (MAX_BODY_BYTES - MAX_UPLOAD_BYTES),
                       allowed_hosts=allowed_hosts, upload_limit=max_upload)
    thumbs = _ThumbCache(THUMB_CACHE)
    store = searcher.store
    read_upload = _Decoder(max_upload, max_pixels, decode_slots)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in STATIC_FILES:  # a fixed list: no path from the URL ever reaches the file system
            raise HTTPException(404, "not found")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name])

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "count": int(store.index.ntotal),
            "dim": int(store.manifest["dim"]),
            "index": store.manifest["params"]["kind"],
            "captions": store.captions is not None,
            "moderation": [c.name for c in moderator.concepts] if moderator else [],
        }

    store.vectors([])  # builds an IVF index's id map now, before requests share the index
    offset_q = Query(0, ge=0, le=MAX_OFFSET)
    dedup_q = Query(None, gt=0.0, le=1.0, description=f"cosine threshold; the page's toggle sends {DEFAULT_DEDUP}")
    safe_q = Query(False, description="hide results flagged by the moderation concepts (needs --concepts)")

    def _results(vector: Any, k: int, offset: int, dedup: float | None, safe: bool, started: float) -> dict[str, Any]:
        body = result_page(searcher, vector, k, offset, Filters(dedup, safe), moderator)
        return {**body, "took_ms": round(1000 * (time.perf_counter() - started), 2)}

    @app.get("/search")
    def search_text(q: str = Query("", max_length=1000), k: int = Query(10, ge=1, le=MAX_K), offset: int = offset_q,
                    dedup: float | None = dedup_q, safe: bool = safe_q) -> dict[str, Any]:
        started = time.perf_counter()
        if not q.strip():
            raise HTTPException(400, "empty query: pass ?q=some+text")
        return _results(searcher.embed_texts([q.strip()]), k, offset, dedup, safe, started)

    @app.post("/search")
    def search_image(image: UploadFile = File(...), k: int = Query(10, ge=1, le=MAX_K), offset: int = offset_q,
                     dedup: float | None = dedup_q, safe: bool = safe_q) -> dict[str, Any]:
        started = time.perf_counter()
        return _results(searcher.embed_image(read_upload(image)), k, offset, dedup, safe, started)

    @app.get("/similar/{item_id}")
    def similar(item_id: int, k: int = Query(10, ge=1, le=MAX_K), offset: int = offset_q,
                dedup: float | None = dedup_q, safe: bool = safe_q) -> dict[str, Any]:
        started = time.perf_counter()
        if store.row(item_id) is None:
            raise HTTPException(404, f"no indexed item with id {item_id}")
        return _results(store.vectors([item_id]), k, offset, dedup, safe, started)

    @app.post("/classify")
    def classify(image: UploadFile = File(...), labels: str = Form(...)) -> dict[str, Any]:
        names = [x.strip() for x in labels.split(",") if x.strip()]
        if not names:
            raise HTTPException(400, 'no labels: pass labels="cat,dog,car"')
        if len(names) > MAX_LABELS:
            raise HTTPException(400, f"{len(names)} labels: at most {MAX_LABELS} per request (split the list)")
        longest = max(names, key=len)
        if len(longest) > MAX_LABEL_CHARS:
            raise HTTPException(400, f"label of {len(longest)} characters: at most {MAX_LABEL_CHARS} "
                                     f"(a label is a class name, e.g. 'cat')")
        pil = read_upload(image)
        # "probability" says how "prob" was computed: "softmax" over these labels (CLIP) or "sigmoid" per label
        # (SigLIP: sigmoid(scale * score + bias), each label judged on its own).
        labels = [s.to_json() for s in searcher.classify(pil, names)]
        return {"labels": labels, "probability": searcher.probability_kind()}

    @app.post("/moderate")
    def moderate(image: UploadFile = File(...)) -> dict[str, Any]:
        if moderator is None:
            raise HTTPException(400, "moderation is not configured: start the server with --concepts FILE")
        vector = searcher.embed_image(read_upload(image))
        return moderator.judge(vector[0])

    def _item_bytes(item_id: int) -> tuple[bytes, str]:
        row = store.row(item_id)
        if row is None:
            raise HTTPException(404, f"no indexed item with id {item_id}")
        try:
            return read_bytes(searcher.root, row["path"]), row["path"]
        except (OSError, KeyError, UserError) as exc:
            raise HTTPException(404, f"item {item_id} is no longer readable") from exc

    @app.get("/thumb/{item_id}")
    def thumb(item_id: int) -> Response:
        cached = thumbs.get(item_id)
        if cached is None:
            cached = _encode(*_item_bytes(item_id), THUMB_SIDE, "JPEG")
            thumbs.put(item_id, cached)
        return Response(cached, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/image/{item_id}")
    def full_image(item_id: int) -> Response:
        return Response(_encode(*_item_bytes(item_id), FULL_SIDE, "PNG"), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    return app


def _encode(data: bytes, name: str, side: int, fmt: str) -> bytes:
    """The image at most ``side`` pixels a side as JPEG or PNG (transparent images were flattened by the loader)."""
    image = load_image(data, name)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buf.getvalue()
