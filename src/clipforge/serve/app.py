"""The HTTP API and web page over one index (FastAPI; run by ``clipforge serve``).

Endpoints (all JSON unless noted):
  GET  /                      the search page (static/index.html, app.js, app.css; no build step, works offline)
  GET  /health                status, vector count, index kind
  GET  /search?q=TEXT&k=K     text -> image
  POST /search                image -> image (multipart field ``image``; ``k`` as a query parameter)
  POST /classify              zero-shot: multipart ``image`` + form field ``labels`` ("cat,dog,car")
  POST /moderate              concept flags for multipart ``image`` (needs ``--concepts``)
  GET  /thumb/{id}            a JPEG thumbnail of indexed item ``id`` (never a user-given path)
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

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Multipart framing around a 20 MB file is a few hundred bytes; 64 KiB also leaves room for form fields.
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024
THUMB_SIDE = 256
THUMB_CACHE = 512
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}
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

    def _results(hits: list, started: float) -> dict[str, Any]:
        return {"results": [h.to_json() for h in hits], "took_ms": round(1000 * (time.perf_counter() - started), 2)}

    @app.get("/search")
    def search_text(q: str = Query("", max_length=1000), k: int = Query(10, ge=1, le=MAX_K)) -> dict[str, Any]:
        started = time.perf_counter()
        if not q.strip():
            raise HTTPException(400, "empty query: pass ?q=some+text")
        return _results(searcher.text_to_image(q, k), started)

    @app.post("/search")
    def search_image(image: UploadFile = File(...), k: int = Query(10, ge=1, le=MAX_K)) -> dict[str, Any]:
        started = time.perf_counter()
        return _results(searcher.image_to_image(read_upload(image), k), started)

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

    @app.get("/thumb/{item_id}")
    def thumb(item_id: int) -> Response:
        cached = thumbs.get(item_id)
        if cached is None:
            row = store.row(item_id)
            if row is None:
                raise HTTPException(404, f"no indexed item with id {item_id}")
            try:
                data = read_bytes(searcher.root, row["path"])
            except (OSError, KeyError, UserError) as exc:
                raise HTTPException(404, f"item {item_id} is no longer readable") from exc
            cached = _thumbnail(data, row["path"])
            thumbs.put(item_id, cached)
        return Response(cached, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    return app


def _thumbnail(data: bytes, name: str) -> bytes:
    """A JPEG of at most THUMB_SIDE pixels a side (transparent images were flattened by the loader)."""
    image = load_image(data, name)
    image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
