"""init_distributed without torchrun: a single-process World; bad environment values are user errors."""

from __future__ import annotations

import pytest
import torch

from clipforge.dist.env import World, destroy_distributed, init_distributed
from clipforge.errors import UserError


def test_without_torchrun_env_is_single_process() -> None:
    world = init_distributed("cpu", env={})
    assert world == World(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert world.is_main and not world.distributed
    destroy_distributed()  # nothing to tear down: no error


def test_world_size_one_from_torchrun_creates_no_group() -> None:
    world = init_distributed("cpu", env={"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    assert world.world_size == 1 and not torch.distributed.is_initialized()


@pytest.mark.parametrize("env,match", [
    ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK"),
    ({"RANK": "3", "WORLD_SIZE": "2"}, "outside"),
])
def test_bad_env_is_a_user_error(env: dict[str, str], match: str) -> None:
    with pytest.raises(UserError, match=match):
        init_distributed("cpu", env=env)


def test_unknown_device_is_a_user_error() -> None:
    with pytest.raises(UserError, match="device"):
        init_distributed("tpu", env={})
