"""Host-device synchronizations in the training step, counted with clipforge.utils.syncs.SyncCounter on CPU.

The counter sees every host read of a tensor value (``float``, ``bool``, ``.item()``, ``.tolist()``, ``.cpu()``),
which on an accelerator is a wait for the device. Before the step kept its metrics on the device it made five
per step (float(loss), two isfinite checks, the logit scale, the text tower's longest-text read); now a step
that does not log makes none, and the NaN/inf skip still holds (tests/test_train_loop.py).
"""

from __future__ import annotations

import json
import math

import torch
from train_support import PairSet, synthetic_factory, tiny_config

from clipforge.dist.env import World
from clipforge.train.config import LogConfig
from clipforge.train.trainer import Trainer
from clipforge.utils.syncs import SyncCounter, _is_host_copy


def test_counter_sees_each_kind_of_host_read():
    t = torch.tensor([1.5])
    with SyncCounter() as syncs:
        float(t)
        bool(t > 0)
        t.item()
        t.tolist()
        t.cpu()
        _ = f"{t[0]:.2f}"
        u = t * 2 + 1  # device work: no read
        u.to("cpu")  # already on the host: a no-op, not a copy
    assert syncs.count == 6, syncs.sites
    assert all(site.startswith("tests/test_train_syncs.py:") or "test_train_syncs.py:" in site for site in syncs.sites)


def test_host_copy_check_takes_calls_without_a_tensor_first():
    """``to`` dispatched with no positional tensor (or none at all) is not a host copy, not an IndexError."""
    assert not _is_host_copy("to", (), {"device": "cpu"})
    assert not _is_host_copy("to", ("cpu",), {})
    assert not _is_host_copy("to", (torch.zeros(1), "cpu"), {})  # already on the host
    assert not _is_host_copy("add", (torch.zeros(1),), {})


def test_non_log_steps_make_no_host_reads(tmp_path):
    torch.set_num_threads(1)
    log = LogConfig(every_steps=4, tensorboard=False, progress=False, count_syncs=True)
    cfg = tiny_config(tmp_path, steps=8, log=log)
    trainer = Trainer(cfg, World(), loader_factory=synthetic_factory(PairSet(64), 16))
    result = trainer.fit()
    assert sorted(trainer.syncs) == list(range(1, 9))
    assert {s: trainer.syncs[s] for s in (1, 2, 3, 5, 6, 7)} == dict.fromkeys((1, 2, 3, 5, 6, 7), 0)
    # A log step reads the counters, the losses since the last log and the logged values: a few reads, not per step.
    assert 1 <= trainer.syncs[4] <= 4 and 1 <= trainer.syncs[8] <= 4, trainer.syncs
    assert sorted(result.losses) == list(range(1, 9)) and all(math.isfinite(v) for v in result.losses.values())
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["host_syncs_last_step"] for r in lines] == [0.0, 0.0]


def test_counting_does_not_change_the_losses(tmp_path):
    torch.set_num_threads(1)
    data = PairSet(64)
    runs = []
    for count in (False, True):
        log = LogConfig(every_steps=3, tensorboard=False, progress=False, count_syncs=count)
        cfg = tiny_config(tmp_path / str(count), steps=4, log=log)
        runs.append(Trainer(cfg, World(), loader_factory=synthetic_factory(data, 16)).fit().losses)
    assert runs[0] == runs[1]
