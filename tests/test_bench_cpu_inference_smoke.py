"""benchmarks/cpu_inference.py --smoke: every model and precision (and onnxruntime) is timed and compared on
test-vit, and the results files are written (the ``--checkpoint`` zero-shot part needs the demo data: not here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from convert_reference import FETCH, wheel_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cpu_inference_benchmark_smoke_runs_end_to_end(tmp_path):
    if not wheel_path().is_file():
        pytest.skip(f"OpenCLIP reference wheel not found at {wheel_path()}; fetch it with: {FETCH}")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cpu_inference.py"), "--smoke", "--onnxruntime",
                    "--out", str(tmp_path)], check=True, env=env, cwd=ROOT, timeout=900)  # fmt: skip
    result = json.loads((tmp_path / "cpu_inference_smoke.json").read_text())
    modes = {"fp32", "bf16", "int8", "int8-image", "auto"}
    assert set(result["towers"]) == {"open_clip_fp32", "transformers_fp32", "onnxruntime_fp32", "onnxruntime_int8",
                                     *(f"clipforge_{m}" for m in modes)}  # fmt: skip
    assert result["towers"]["clipforge_fp32"]["cosine_image"] > 0.99999  # the same function as OpenCLIP's
    assert result["best_precision"] in modes
    assert {c["tower"] for c in result["auto"]["checks"]} == {"image", "text"}
    assert all(result["ratios"][k] > 0 for k in ("image_vs_open_clip_fp32", "text_vs_open_clip_fp32"))
    assert result["min_cosine"] >= 0.999 or result["best_precision"] == "fp32"
    assert (tmp_path / "cpu_inference_smoke.md").read_text().startswith("# CPU inference")
