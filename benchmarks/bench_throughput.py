"""Throughput of every stage (issue 14), each figure printed as a Markdown table row.

    python benchmarks/bench_throughput.py data-path [--clips 3000] [--epochs 30]
    python benchmarks/bench_throughput.py loops [--models cnn_lite,eat_s] [--batches 10] [--repeats 2]
    python benchmarks/bench_throughput.py inference [--models cnn_lite,cnn14]
    python benchmarks/bench_throughput.py reference --panns /tmp/audioset_tagging_cnn
    python benchmarks/bench_throughput.py reference --eat /tmp/AudioClassfication --repeats 5

data-path: builds a 10-class folder dataset of 1-s WAV files, packs it (prepare clips/s),
reads it through the DataLoader with 0/1/2 workers, trains cnn_lite end to end for
``--epochs`` (validation each epoch, test at the end) and measures int8's accuracy change
on the trained checkpoint. loops: audioclf's training loop against a bare PyTorch loop over
the same model and batches. inference: one-clip latency and real-time factor with PyTorch,
ONNX Runtime and int8. reference: CNN14 inference against the PANNs research code, EAT-S
training steps against the EAT research code (same weights).
The functions live in ``audioclf.benchmark`` (``audioclf benchmark`` runs them too).
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
from pathlib import Path

from audioclf import benchmark as b


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=("data-path", "loops", "inference", "reference"))
    p.add_argument("--clips", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--models", default="cnn_lite")
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--loop-epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--panns", help="checkout of qiuqiangkong/audioset_tagging_cnn")
    p.add_argument("--eat", help="checkout of Alibaba-MIIL/AudioClassfication (EAT)")
    p.add_argument("--workers", default="0,1,2")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the training runs (data-path, loops), e.g. trainer.channels_last=true")
    a = p.parse_args()
    fig = b.Figures()
    models = [m for m in a.models.split(",") if m]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if a.part == "data-path":
            folder = b.make_folder_dataset(root / "folder", clips=a.clips)
            store = b.bench_prepare(folder, root / "folder.h5", fig)
            b.bench_store_reads(store, fig, workers=[int(w) for w in a.workers.split(",")])
            best = b.bench_full_run(store, fig, epochs=a.epochs, overrides=a.set)
            if best is not None:
                b.bench_int8_accuracy(best, store, fig)
        elif a.part == "loops":
            from audioclf.models import create_model

            for name in models:
                m = create_model(name, 10)
                n, rate = int(m.clip_samples), int(m.sample_rate)
                store = b.make_store(root / f"{name}.h5", max(10 * a.batches * 32 // (4 if n > 32000 else 1), 80), 10,
                                     n, rate)
                batch = 32 if n <= 32000 else 8
                b.bench_training(store, name, fig, epochs=a.loop_epochs, batch=batch, batches=a.batches, repeats=a.repeats,
                                 overrides=a.set)
        elif a.part == "inference":
            for name in models:
                b.bench_inference(name, fig)
        else:
            if not (a.panns or a.eat):
                p.error("reference needs --panns DIR and/or --eat DIR")
            if a.panns:
                b.bench_reference_panns(a.panns, fig)
            if a.eat:
                b.bench_reference_eat(a.eat, fig, rounds=a.repeats)
    print(fig.markdown(f"bench_throughput.py {a.part} ({datetime.date.today()}, {b.machine()})"))


if __name__ == "__main__":
    main()
