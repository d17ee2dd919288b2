"""Which process counts as rank 0 before the process group exists, and which strategies
``trainer.strategy`` takes (the DDP runs themselves: test_ddp.py)."""

from __future__ import annotations

import pytest

from audioclf.config import load_config
from audioclf.training.distributed import check_strategy, launch_rank_is_zero, pending_run_dir

LAUNCHER_VARIABLES = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "LOCAL_RANK", "NODE_RANK")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for k in LAUNCHER_VARIABLES:
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_a_plain_process_is_rank_zero(clean_env: pytest.MonkeyPatch) -> None:
    assert launch_rank_is_zero()
    clean_env.setenv("LOCAL_RANK", "0")  # Lightning's ddp launcher, in rank 0 after launching
    clean_env.setenv("NODE_RANK", "0")
    assert launch_rank_is_zero()


@pytest.mark.parametrize(("var", "value"), [("RANK", "3"), ("LOCAL_RANK", "1"), ("NODE_RANK", "1"), ("SLURM_PROCID", "5")])
def test_a_launched_process_of_another_rank_is_not(clean_env: pytest.MonkeyPatch, var: str, value: str) -> None:
    clean_env.setenv(var, value)
    assert not launch_rank_is_zero()
    # its stand-in run directory is never a real run's name
    assert pending_run_dir("runs", "x").name.endswith("-pending")


def test_strategies(tmp_path) -> None:
    cfg = load_config(None, ["trainer.strategy=ddp", "trainer.num_nodes=2", "trainer.devices=4", "trainer.sync_batchnorm=true"])
    assert (cfg.trainer.strategy, cfg.trainer.num_nodes, cfg.trainer.devices) == ("ddp", 2, 4)
    check_strategy("ddp")
    check_strategy("auto")
    with pytest.raises(ValueError, match="unknown strategy 'dpp'"):
        check_strategy("dpp")
    with pytest.raises(ValueError, match="use trainer.strategy=ddp"):
        check_strategy("ddp_spawn")
