"""Golden loss curve: the deterministic tiny run must keep producing the stored losses.

Any change to the model, loss, optimizer, schedule or initialization that alters training shows up here.
If the change is intended, regenerate the curve and commit it with the change:

    PYTHONPATH=src:tests python tests/test_train_golden.py --regenerate

The tolerance (relative 1e-4) allows for float32 summation order differing between CPUs and BLAS builds
(observed run-to-run on one machine: exactly equal); a real change in training moves losses by far more.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from train_support import PairSet, synthetic_factory, tiny_config

from clipforge.train.config import OptimConfig
from clipforge.train.trainer import run_training

GOLDEN = Path(__file__).parent / "data" / "golden_loss_tiny.json"
STEPS = 16


def tiny_run(run_dir: Path) -> list[float]:
    """test-vit on 64 synthetic pairs, batch 16, 16 steps (4 epochs), fp32, one thread, seed 0."""
    torch.set_num_threads(1)
    cfg = tiny_config(run_dir, steps=STEPS, optim=OptimConfig(lr=2e-3, warmup_steps=4, weight_decay=0.1))
    result = run_training(cfg, loader_factory=synthetic_factory(PairSet(64, seed=0), 16, seed=0))
    return [result.losses[s] for s in range(1, STEPS + 1)]


def test_golden_loss_curve(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    losses = tiny_run(tmp_path)
    want = torch.tensor(golden["losses"], dtype=torch.float64)
    got = torch.tensor(losses, dtype=torch.float64)
    assert torch.allclose(got, want, rtol=1e-4, atol=0), f"loss curve changed:\n got  {losses}\n want {golden['losses']}"
    assert losses[-1] < losses[0] - 1.0  # and it is a curve that learns


if __name__ == "__main__":
    if "--regenerate" not in sys.argv:
        sys.exit("usage: PYTHONPATH=src:tests python tests/test_train_golden.py --regenerate")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        values = tiny_run(Path(tmp))
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps({"torch": torch.__version__, "steps": STEPS, "losses": values}, indent=1) + "\n")
    print(f"wrote {GOLDEN}: {values}")
