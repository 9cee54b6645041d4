"""clipforge installed from its wheel (not editable): every packaged file is found through the package.

The demo's recipes and queries, the prompt sets, the bundled vocabulary and the web page are package data read
with importlib.resources; a file found relative to the source checkout instead would work in an editable
install and break in this one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import json, sys
from pathlib import Path
import clipforge
from clipforge.demo.config import load_demo_config, demo_train_config
from clipforge.demo.queries import load_queries
from clipforge.eval.templates import get_templates
from clipforge.serve.app import STATIC
from clipforge.text.tokenizer import openai_tokenizer

cfg = load_demo_config(None, [], quick=True)
train = demo_train_config(cfg, Path("emoji"), cuda=True)
print(json.dumps({
    "file": clipforge.__file__,
    "quick_images": cfg.images,
    "recipe_model": train.model if isinstance(train.model, str) else "config",
    "recipe_steps": train.steps,
    "queries": len(load_queries("")),
    "templates": len(get_templates("openai")),
    "static": sorted(p.name for p in STATIC.iterdir()),
    "tokens": openai_tokenizer()(["a photo of a cat"])[0, :3].tolist(),
}))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout, unpacked as pip would install it."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools in the environment")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src-copy"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                    "-w", str(tmp / "dist")], check=True, capture_output=True, cwd=tmp)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("clipforge-*.whl")
    site = tmp / "site"
    zipfile.ZipFile(wheel).extractall(site)
    return site


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # PYTHONPATH comes before the editable install's path entry, so `clipforge` is the unpacked wheel's.
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_packaged_files_load_from_the_wheel(site, tmp_path):
    out = _run(site, tmp_path, "-c", CHECK)
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(facts["file"]).is_relative_to(site)
    assert facts["quick_images"] > 0  # the packaged quick variant was read
    assert facts["recipe_steps"] > 0
    assert facts["queries"] >= 20 and facts["templates"] == 80
    assert "index.html" in facts["static"]
    assert facts["tokens"][0] == 49406  # start of text: the bundled vocabulary was read


def test_demo_print_config_from_the_wheel(site, tmp_path):
    out = _run(site, tmp_path, "-m", "clipforge", "demo", "--quick", "--print-config", "out=elsewhere")
    assert out.returncode == 0, out.stderr
    assert "out: elsewhere" in out.stdout and "recipe: tiny-emoji" in out.stdout
