"""Named pretrained checkpoints: Hugging Face CLIPModel repos, converted once into clipforge checkpoints.

``resolve_pretrained("openai/clip-vit-base-patch32")`` returns a clipforge checkpoint directory. The HF
files are looked for, in order: a folder the user filled by hand (``<cache>/hf/<org>--<name>/``), the
Hugging Face hub cache (via huggingface_hub, which honours HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE), and
finally the hub itself when a network is there. The converted checkpoint is kept in
``<cache>/converted/<org>--<name>/``; ``<cache>`` is $CLIPFORGE_CACHE or ~/.cache/clipforge.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import urllib.parse
from pathlib import Path

from clipforge.checkpoint import CONFIG_FILE, WEIGHTS_FILE, save_checkpoint
from clipforge.convert.common import build_model
from clipforge.convert.hf import HF_CONFIG_FILE, HF_PREPROCESSOR_FILE, HF_PROCESSOR_FILE, HF_WEIGHT_FILES, import_hf
from clipforge.convert.hf_files import TOKENIZER_JSON
from clipforge.errors import UserError

log = logging.getLogger(__name__)

HUB_PREFIX = "hf-hub:"
# Names that resolve without the prefix: HF repos holding a transformers CLIPModel.
KNOWN_PRETRAINED = (
    "openai/clip-vit-base-patch32",
    "openai/clip-vit-base-patch16",
    "openai/clip-vit-large-patch14",
    "openai/clip-vit-large-patch14-336",
    "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
)
REQUIRED_FILES = (HF_CONFIG_FILE,)
WEIGHT_FILES = HF_WEIGHT_FILES  # either one, safetensors preferred
# The tokenizer files: a folder's own vocabulary (SigLIP's, a custom CLIP's) comes with the weights.
OPTIONAL_FILES = (HF_PREPROCESSOR_FILE, HF_PROCESSOR_FILE, TOKENIZER_JSON, "tokenizer_config.json", "special_tokens_map.json")
OFFLINE_VALUES = ("1", "true", "yes", "on")
HUB_ENDPOINT = "https://huggingface.co"  # huggingface_hub's default; $HF_ENDPOINT replaces it
# Without a network the hub client retries for tens of seconds before giving up; one TCP connect answers in
# milliseconds (a DNS failure) or this many seconds (a silent firewall).
PROBE_TIMEOUT_S = 2.0


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where manual downloads and converted checkpoints live (read at call time, never at import)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("CLIPFORGE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "clipforge"


def _repo_id(name: str) -> str:
    if name.startswith(HUB_PREFIX):
        repo = name[len(HUB_PREFIX) :]
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise UserError(f"{name!r}: expected hf-hub:ORG/NAME")
        return repo
    if name in KNOWN_PRETRAINED:
        return name
    raise UserError(
        f"{name!r} is neither a clipforge checkpoint directory nor a known pretrained name",
        hint=f"known names: {', '.join(KNOWN_PRETRAINED)}; any Hugging Face CLIPModel repo works as hf-hub:ORG/NAME",
    )


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub's host opens within ``timeout`` seconds (DNS lookup included)."""
    url = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or HUB_ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((url.hostname or "", port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    # A thread, because the DNS lookup inside create_connection has no timeout of its own.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in REQUIRED_FILES) and any((folder / f).is_file() for f in WEIGHT_FILES)


def _from_hub(repo: str, network: bool, hub_cache_dir: str | Path | None) -> Path | None:
    """The snapshot folder holding the repo's files, from the hub cache (or the hub when ``network``)."""
    # Deferred on purpose: the hub client takes most of a second to import and is needed only for names that
    # are not a local checkpoint, while every clipforge.load imports this module.
    from huggingface_hub import hf_hub_download

    kwargs = {"repo_id": repo, "cache_dir": hub_cache_dir, "local_files_only": not network}
    try:
        config = Path(hf_hub_download(filename=REQUIRED_FILES[0], **kwargs))
    except Exception as exc:  # offline, not cached, no such repo: all mean "not available"
        log.debug("hub lookup of %s failed: %s", repo, exc)
        return None
    for name in WEIGHT_FILES:
        try:
            hf_hub_download(filename=name, **kwargs)
        except Exception:  # try the next weight file name
            continue
        for extra in OPTIONAL_FILES:
            with contextlib.suppress(Exception):  # optional file
                hf_hub_download(filename=extra, **kwargs)
        return config.parent
    return None


def resolve_pretrained(
    name: str,
    cache_dir: str | Path | None = None,
    network: bool | None = None,
    hub_cache_dir: str | Path | None = None,
) -> Path:
    """A clipforge checkpoint directory for a named pretrained model, converting it on first use.

    Args:
        name: a known name (``KNOWN_PRETRAINED``) or ``hf-hub:ORG/NAME`` for any HF CLIPModel repo.
        cache_dir: clipforge's cache (default $CLIPFORGE_CACHE or ~/.cache/clipforge).
        network: allow downloads; default: yes unless HF_HUB_OFFLINE is set.
        hub_cache_dir: the Hugging Face hub cache (default: huggingface_hub's own, e.g. $HF_HUB_CACHE).

    Raises:
        UserError: for an unknown name (listing the known ones), or offline, naming exactly which files to
            fetch and the folder to put them in.
    """
    repo = _repo_id(name)
    root = cache_root(cache_dir)
    slug = repo.replace("/", "--")
    converted = root / "converted" / slug
    if (converted / CONFIG_FILE).is_file() and (converted / WEIGHTS_FILE).is_file():
        return converted
    manual = root / "hf" / slug
    unreachable = ""
    if network is None and not _complete(manual):
        network = os.environ.get("HF_HUB_OFFLINE", "").lower() not in OFFLINE_VALUES
        if network and not hub_reachable():
            network, unreachable = False, " (the hub is not reachable: no network?)"
            log.info("the Hugging Face hub is not reachable: looking for %s in the local caches only", repo)
    folder = manual if _complete(manual) else _from_hub(repo, bool(network), hub_cache_dir)
    if folder is None:
        base = f"https://huggingface.co/{repo}/resolve/main"
        raise UserError(
            f"pretrained model {name!r} is not available offline{unreachable}",
            hint=f"download {base}/config.json and {base}/model.safetensors (optionally "
            f"{base}/preprocessor_config.json) into {manual}/, or run once with network access",
        )
    log.info("converting %s from %s into %s", repo, folder, converted)
    imported = import_hf(folder)
    save_checkpoint(build_model(imported), imported.config, converted, tokenizer_json=imported.tokenizer_json)
    return converted
