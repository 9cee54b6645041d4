"""Counting host-device synchronizations: every place Python reads a tensor's value back to the host.

On an accelerator each such read (``float(loss)``, ``if torch.isfinite(x):``, ``.item()``, ``.tolist()``,
``.cpu()``) makes the host wait until the device has finished all queued work, so the next step's kernels
cannot be queued behind the running ones. ``SyncCounter`` sees these reads through a ``TorchFunctionMode``,
which works on any device, CPU included: a CPU test counts exactly the reads a GPU run would stall on.

What it cannot see: reads done inside C++ kernels (none in clipforge's step; on CUDA,
``torch.cuda.set_sync_debug_mode("warn")`` reports those too), and ``.numpy()``, which only works on tensors
already on the host.

    with SyncCounter() as syncs:
        trainer_step()
    syncs.count, syncs.sites     # 0, []
"""

from __future__ import annotations

import traceback
from collections import Counter
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# Tensor methods that hand a value (or a copy) to the host.
_READS = frozenset({"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "__format__", "__repr__", "cpu"})
_TORCH_DIRS = ("/torch/", "/site-packages/torch")


def _is_host_copy(name: str, args: tuple, kwargs: dict) -> bool:
    """``t.to("cpu")`` of a tensor not on the host (``.to(device)`` on a CPU run is the same call as a GPU run's
    host-to-device copy, which does not wait, so CPU tensors are not counted here; ``.cpu()`` always is)."""
    if name != "to" or not args or not isinstance(args[0], torch.Tensor) or args[0].device.type == "cpu":
        return False
    targets = list(args[1:]) + [kwargs.get("device")]
    return any(isinstance(t, str | torch.device) and torch.device(t).type == "cpu" for t in targets)


def _caller() -> str:
    """``file:line`` of the innermost frame outside torch and this module (where the read was written)."""
    for frame in reversed(traceback.extract_stack()):
        if frame.filename != __file__ and not any(d in frame.filename for d in _TORCH_DIRS):
            return f"{frame.filename.rsplit('/src/', 1)[-1]}:{frame.lineno}"
    return "?"


class SyncCounter(TorchFunctionMode):
    """Context manager counting host reads of tensor values (see the module docstring).

    Attributes:
        count: reads seen so far.
        sites: ``Counter`` of ``"file:line method"`` -> reads made there.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.sites: Counter[str] = Counter()

    def reset(self) -> None:
        self.count = 0
        self.sites.clear()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if (name in _READS or _is_host_copy(name, args, kwargs)) and args and isinstance(args[0], torch.Tensor):
            self.count += 1
            self.sites[f"{_caller()} {name}"] += 1
        return func(*args, **kwargs)
