"""benchmarks/gpu.py --smoke: the GPU benchmark runs end to end on CPU with tiny configs, so it is ready to run
the day a device is lent (its figures on CPU mean nothing; the test checks that every measurement is made)."""

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
def test_gpu_benchmark_smoke_runs_end_to_end(tmp_path):
    if not wheel_path().is_file():
        pytest.skip(f"OpenCLIP reference wheel not found at {wheel_path()}; fetch it with: {FETCH}")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--device", "cpu",
                    "--out", str(tmp_path)], check=True, env=env, cwd=ROOT, timeout=900)  # fmt: skip
    (path,) = tmp_path.glob("gpu-*-smoke.json")
    result = json.loads(path.read_text())
    assert result["smoke"] is True
    assert set(result["ratios"]) == {"train_vit_b16_bs256_vs_open_clip_compiled",
                                     "train_vit_b32_bs1024_vs_open_clip_compiled", "embed_vit_b16_vs_open_clip",
                                     "peak_mem_vit_b16_vs_open_clip"}  # fmt: skip
    for name, ratio in result["ratios"].items():
        assert ratio is None if name.startswith("peak_mem") else ratio > 0, name  # no CUDA memory stats on CPU
    for run in result["train"].values():
        for side in ("clipforge_eager", "open_clip_eager", "clipforge_compiled", "open_clip_compiled"):
            assert run[side]["samples_per_s"] > 0 and "mfu" in run[side]
        assert run["flops_per_sample"] > 0
    for run in result["embed"].values():
        assert run["clipforge"]["images_per_s"] > 0 and run["open_clip"]["images_per_s"] > 0
