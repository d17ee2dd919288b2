"""Which process writes, under DDP: rank 0, before and after the process group exists.

Every rank runs the whole of :func:`audioclf.training.trainer.train`: Lightning's ``ddp``
strategy starts the other processes by running the same command again (with
``LOCAL_RANK`` set), and ``torchrun`` or SLURM's ``srun`` start them all at once. Before
``trainer.fit`` there is no process group to ask, so :func:`launch_rank_is_zero` reads the
variables the launchers set; once Lightning has set the group up, :class:`SharedRunDir`
hands every rank the run directory rank 0 made (the other ranks never make one: a
directory name from a time stamp would differ between processes started seconds apart).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from audioclf.errors import ConfigError

# Set by the launchers Lightning supports: torchrun (RANK, LOCAL_RANK), Lightning's own
# ddp launcher (LOCAL_RANK, NODE_RANK), SLURM (SLURM_PROCID), LSF/jsrun (JSM_NAMESPACE_RANK).
_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "LOCAL_RANK", "NODE_RANK")


def launch_rank_is_zero() -> bool:
    """Whether this process is (or will become) global rank 0: true unless a launcher
    set a non-zero rank variable. A plain single process is rank 0."""
    return all(os.environ.get(k, "0").strip() in ("", "0") for k in _RANK_VARIABLES)


def pending_run_dir(output_dir: str | Path, name: str) -> Path:
    """What a rank other than 0 uses as its run directory until :class:`SharedRunDir`
    tells it rank 0's; never created."""
    return Path(output_dir) / f"{name}-rank{os.environ.get('RANK') or os.environ.get('LOCAL_RANK') or 'N'}-pending"


def shared_run_dir_callback(run_dir: Path) -> Any:
    """A Lightning callback holding the run directory: rank 0's, broadcast to every rank
    in ``setup`` (after the process group exists, before any checkpoint is written)."""
    import lightning as L

    class SharedRunDir(L.Callback):
        def __init__(self, run_dir: Path) -> None:
            self.run_dir = Path(run_dir)

        def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
            self.run_dir = Path(trainer.strategy.broadcast(str(self.run_dir), src=0))

    return SharedRunDir(run_dir)


def check_strategy(strategy: str) -> None:
    """``trainer.strategy`` names a Lightning strategy that runs every process through
    ``train`` (spawning strategies keep the run's state in child processes: use ``ddp``)."""
    from lightning.pytorch.strategies import StrategyRegistry

    known = ["auto", *StrategyRegistry.available_strategies()]
    if strategy not in known:
        raise ConfigError(f"trainer.strategy: unknown strategy {strategy!r}; choose one of {', '.join(sorted(known))}")
    if any(w in strategy for w in ("spawn", "fork", "notebook")):
        raise ConfigError(
            f"trainer.strategy={strategy} starts the processes inside trainer.fit and loses their state when they end; "
            "use trainer.strategy=ddp (Lightning runs the command once per device) or launch with torchrun/srun "
            "(docs/scaling.md)"
        )
