"""``audioclf demo``: the whole path on the built-in synthetic data, offline.

generate + pack the synthetic set -> train ``cnn_lite`` -> evaluate on the held-out test
split -> write an unseen 10-second scene of several events to a WAV file, label it and
write the report (its timeline and playhead show the events one after the other).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audioclf.config import Config, load_config
from audioclf.data.catalog import create_source
from audioclf.data.catalog.synthetic import synthesize_scene
from audioclf.data.prepare import prepare_dataset
from audioclf.data.store import Store

log = logging.getLogger(__name__)

DEMO_SETTINGS = [
    "name=demo",
    "model.name=cnn_lite",
    "data.batch_size=32",
    "optim.lr=3e-3",
    "optim.weight_decay=0.01",
    "optim.scheduler=cosine",
    "optim.warmup_epochs=0.5",
    "trainer.max_epochs=12",
]

# The example scene: 10 s, five events at these onsets (seconds), silence between them.
DEMO_SCENE = [("siren", 0.5), ("chirp_up", 2.5), ("buzz", 4.5), ("rain", 6.3), ("double_beep", 8.3)]
DEMO_SCENE_SEED = 2**20 + 7  # seeds the dataset never uses for its clips


@dataclass
class DemoResult:
    store: Path
    run_dir: Path
    checkpoint: Path
    test_metrics: dict[str, Any]
    example_file: Path
    example_events: list[tuple[str, float, float]]  # (label, start, end) of each event in the scene
    predictions: list[Any]  # clip-level labels of the whole scene
    detected: list[Any] = field(default_factory=list)  # timeline events (audioclf.inference.timeline)
    report: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def demo_config(workdir: Path, overrides: list[str] | None = None) -> Config:
    return load_config(
        None,
        [*DEMO_SETTINGS, f"data.store={workdir / 'data' / 'synthetic.h5'}", f"output_dir={workdir / 'runs'}", *(overrides or [])],
    )


def prepare_demo_data(workdir: str | Path, clips_per_class: int = 80, workers: int = 2, progress: Any = None) -> Path:
    """Generate and pack the synthetic set once; a store of the right size is reused."""
    store_path = Path(workdir) / "data" / "synthetic.h5"
    source = create_source("synthetic", clips_per_class=clips_per_class)
    if store_path.exists() and len(Store(store_path)) != clips_per_class * len(source.label_names()):
        store_path.unlink()  # built with another clips_per_class: rebuild
    if not store_path.exists():
        prepare_dataset(source, store_path, workers=workers, progress=progress)
    return store_path


def run_demo(
    workdir: str | Path = "audioclf-demo",
    overrides: list[str] | None = None,
    clips_per_class: int = 80,
    workers: int = 2,
    progress: Any = None,
) -> DemoResult:
    from audioclf.inference import Classifier
    from audioclf.training.trainer import train

    workdir = Path(workdir)
    times: dict[str, float] = {}
    t = time.time()
    store_path = prepare_demo_data(workdir, clips_per_class, workers, progress)
    times["prepare"] = time.time() - t

    t = time.time()
    config = demo_config(workdir, overrides)
    result = train(config)
    times["train+evaluate"] = time.time() - t

    t = time.time()
    example = workdir / "example_scene.wav"
    from audioclf.audio.io import save_audio

    # a scene from seeds the generator never used for the dataset
    wave, events = synthesize_scene(DEMO_SCENE, seconds=10.0, seed=DEMO_SCENE_SEED, sample_rate=16000)
    save_audio(example, wave, 16000)
    clf = Classifier.from_checkpoint(result.best_checkpoint)
    preds = clf.predict(example, top_k=3)
    detected = clf.predict_timeline(example).events(0.5, top_k=10)
    times["predict"] = time.time() - t

    t = time.time()
    # the run's curves and confusion matrix, and the example under a playhead
    from audioclf.reporting import write_report

    report = write_report(result.run_dir, result.run_dir / "report.html", example, store=store_path, split="test")
    times["report"] = time.time() - t
    return DemoResult(
        store_path, result.run_dir, result.best_checkpoint, result.test_metrics, example, events, preds, detected, report,
        times,
    )
