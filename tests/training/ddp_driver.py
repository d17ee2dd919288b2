"""Runs in every process of a DDP launch of ``tests/training/test_ddp.py`` (Lightning's
``ddp`` strategy starts the other process by running this file again).

``python tests/training/ddp_driver.py WORK STORE ML_STORE``: in one launch, (1) a
single-label run, its clips loaded by one worker process per rank, that records, per
rank and epoch, the batches its training loader draws; (2) a multi-label run; (3) the
first run again, killed mid-epoch (a crash on every rank), once for each of
``KILLED_WORKERS`` loader worker counts, for the test to resume.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning as L

from audioclf.config import load_config
from audioclf.training.trainer import train
from tests.training.helpers import Kill

DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]
# a stateful recipe: mixing and EMA draw per-rank random numbers; per-step checkpoints
COMMON = [
    "recipe=none", "model.settings={channels: [8, 16]}", "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
    "data.batch_size=4", "trainer.max_epochs=2", "seed=3", "task.mix.methods={mixup: 1.0}", "task.ema_decay=0.9",
    "optim.warmup_epochs=1", "trainer.checkpoint_every_n_steps=1", "data.num_workers=0",
]
# the killed runs' loader workers: in the training process, and one worker process per rank
# (whose loader iterator starts differently: a resume must skip the batches trained on in both)
KILLED_WORKERS = (0, 1)


class Recorder(L.Callback):
    """Writes ``<dir>/rank<r>.json``: per epoch, the batches of dataset positions the
    rank's training loader yields, and the sizes of the batches it trained on."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.epochs: dict[int, dict[str, list]] = {}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        shard = trainer.train_dataloader.batch_sampler.base  # the ShardBatchSampler, epoch set by Lightning
        self.epochs[trainer.current_epoch] = {"batches": [list(b) for b in shard], "trained": []}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.epochs[trainer.current_epoch]["trained"].append(int(batch[0].shape[0]))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.epochs))


def main() -> None:
    work, store, ml_store = (Path(a) for a in sys.argv[1:4])

    def config(name: str, store: Path, out: str, *extra: str):
        return load_config(None, [*COMMON, *DDP, f"data.store={store}", f"output_dir={work / out}", f"name={name}", *extra])

    res = train(config("single", store, "single", "data.num_workers=1"), callbacks=[Recorder(work / "record")])
    res_ml = train(config("multi", ml_store, "multi"), callbacks=[])
    if res.rank == 0:
        (work / "results.json").write_text(json.dumps({
            "single": {"run_dir": str(res.run_dir), "best": str(res.best_checkpoint), "val": res.val_metrics},
            "multi": {"run_dir": str(res_ml.run_dir), "best": str(res_ml.best_checkpoint), "val": res_ml.val_metrics},
        }))
    for workers in KILLED_WORKERS:
        try:
            train(config("killed", store, f"killed-w{workers}", f"data.num_workers={workers}"),
                  callbacks=[Kill(step=int(os.environ["DDP_KILL_AT"]))])
        except RuntimeError as err:
            if "killed" not in str(err):
                raise


if __name__ == "__main__":
    main()
