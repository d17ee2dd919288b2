"""``audioclf benchmark``: how fast each stage runs on this machine, as a table.

For chosen models it measures

* prepare: a folder dataset of generated WAV files packed into a store (clips/s);
* store reads: ``ClipDataset`` batches through a ``DataLoader`` with 0, 1, ... workers (clips/s);
* training: clips/s of audioclf's loop (``train``: Lightning, the task, the resumable
  loader) and of a bare PyTorch loop (forward, cross-entropy, backward, AdamW step) over the
  *same* model, loader and batches, and their ratio;
* inference: latency of one clip and real-time factor (clip seconds per second of compute)
  with PyTorch, ONNX Runtime and static int8, and int8's top-1 agreement with float.

Runs alternate (bare, audioclf, bare, audioclf ... with ``repeats``) so that a machine
whose load changes meanwhile affects both sides alike; compare the ratios.
"""

from __future__ import annotations

import logging
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audioclf.errors import MissingDependencyError

log = logging.getLogger(__name__)


@dataclass
class Figures:
    """Every figure of one benchmark run: ``rows`` (stage, model, what, value, unit)."""

    rows: list[tuple[str, str, str, float, str]] = field(default_factory=list)

    def add(self, stage: str, model: str, what: str, value: float, unit: str) -> None:
        log.info("%s %s %s: %.4g %s", stage, model, what, value, unit)
        self.rows.append((stage, model, what, float(value), unit))

    def get(self, stage: str, model: str, what: str) -> float:
        return next(v for s, m, w, v, _ in self.rows if (s, m, w) == (stage, model, what))

    def markdown(self, title: str) -> str:
        lines = [f"### {title}", "", "| stage | model | measure | value | unit |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {s} | {m} | {w} | {v:.4g} | {u} |" for s, m, w, v, u in self.rows]
        return "\n".join(lines) + "\n"


def machine() -> str:
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{platform.machine()}, {cores} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}")


# --- data -------------------------------------------------------------------------------------


def tone(c: int, classes: int, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A clip of class ``c``: its own fundamental with two harmonics, random phase, level
    and noise, float32 ``(n,)`` peak below 0.7."""
    f0 = float(np.geomspace(150.0, min(4000.0, 0.2 * sample_rate), classes)[c])
    t = np.arange(n) / sample_rate
    x = sum(a * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k, a in ((1, 0.5), (2, 0.25), (3, 0.12)))
    x = x * rng.uniform(0.3, 0.8) + 0.05 * rng.standard_normal(n)
    return (x / max(1.0, float(np.abs(x).max()) / 0.7)).astype(np.float32)


def make_folder_dataset(root: str | Path, clips: int = 3000, classes: int = 10, seconds: float = 1.0,
                        sample_rate: int = 16000, seed: int = 0) -> Path:
    """``root/<class>/<i>.wav``: ``clips`` 16-bit WAV files spread evenly over ``classes``."""
    from audioclf.audio.io import save_audio

    root = Path(root)
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    for i in range(clips):
        c = i % classes
        (root / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
        save_audio(root / f"class{c:02d}" / f"{i:05d}.wav", tone(c, classes, n, sample_rate, rng), sample_rate, "PCM_16")
    return root


def make_store(path: str | Path, clips: int, classes: int, samples: int, sample_rate: int, seed: int = 0) -> Path:
    """A store written directly (no files): ``clips`` tone clips of ``samples`` samples,
    80/10/10 train/validation/test."""
    from audioclf.data.store import StoreHeader, StoreWriter

    rng = np.random.default_rng(seed)
    header = StoreHeader(sample_rate, [f"class{c:02d}" for c in range(classes)], dataset="benchmark")
    with StoreWriter(path, header, overwrite=True) as w:
        for i in range(clips):
            split = ("train",) * 8 + ("validation", "test")
            w.add(tone(i % classes, classes, samples, sample_rate, rng), i % classes, clip_id=str(i), split=split[i % 10])
    return Path(path)


def bench_prepare(folder: Path, store: Path, figures: Figures, workers: int = 1) -> Path:
    from audioclf.data.catalog import create_source
    from audioclf.data.prepare import prepare_dataset

    t = time.perf_counter()
    report = prepare_dataset(create_source("folder", str(folder)), store, workers=workers, overwrite=True)
    seconds = time.perf_counter() - t
    clips = int(getattr(report, "clips", 0) or len(list(folder.rglob("*.wav"))))
    figures.add("prepare", "-", f"folder -> store ({workers} worker(s))", clips / seconds, "clips/s")
    return store


def bench_store_reads(store: Path, figures: Figures, workers: Sequence[int] = (0, 1, 2), batch: int = 32,
                      train: bool = True) -> None:
    """Random-order training batches (crop, pad, targets) from the store."""
    from torch.utils.data import DataLoader

    from audioclf.data.dataset import ClipDataset
    from audioclf.data.store import Store

    s = Store(store)
    idx = s.indices(split="train")
    n = int(s.lengths[idx].max())
    for w in workers:
        ds = ClipDataset(s, idx, n, train=train, seed=0)
        loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=w, persistent_workers=w > 0,
                            **({"prefetch_factor": 4} if w else {}))
        next(iter(loader))  # worker start-up is not a read
        t = time.perf_counter()
        count = sum(len(x) for x, _ in loader)
        figures.add("store read", "-", f"{w} worker(s), batch {batch}", count / (time.perf_counter() - t), "clips/s")


# --- training ---------------------------------------------------------------------------------


def _train_config(store: Path, model: str, epochs: int, batch: int, out: Path, batches: int | None,
                  overrides: Sequence[str] = ()) -> Any:
    from audioclf.config import load_config

    over = [
        f"data.store={store}", f"model.name={model}", f"data.batch_size={batch}", f"trainer.max_epochs={epochs}",
        f"output_dir={out}", "trainer.progress_bar=false", "data.test_split=null", "trainer.accelerator=cpu",
        "data.num_workers=auto",
        *(["data.val_split=null"] if batches is not None else []),
        *([f"trainer.limit_train_batches={batches}"] if batches is not None else []),
        *overrides,
    ]
    return load_config(None, over)


def _audioclf_loop(config: Any) -> tuple[int, float, float]:
    """(training clips, seconds from the first to the last training batch, whole run seconds)."""
    import lightning as L

    from audioclf.training.trainer import train

    class Clock(L.Callback):
        clips, start, end = 0, 0.0, 0.0

        def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            self.clips += len(batch[0])
            self.end = time.perf_counter()

    clock = Clock()
    t = time.perf_counter()
    train(config, callbacks=[clock], test=False)
    return clock.clips, clock.end - clock.start, time.perf_counter() - t


def _bare_loop(config: Any) -> tuple[int, float]:
    """The same model (as ``train`` builds it, same seed, same memory format) and the same
    training loader, trained by a plain loop: forward, loss, backward, fused AdamW step."""
    import lightning as L

    from audioclf.data.store import Store
    from audioclf.training.trainer import build_loaders, build_model, speed_up_model

    store = Store(config.data.store)
    L.seed_everything(config.seed, verbose=False)
    model = build_model(config, store).train()
    speed_up_model(model, channels_last=config.trainer.channels_last)  # the memory format train() uses
    clip = int(round(config.data.clip_seconds * store.sample_rate)) if config.data.clip_seconds else int(model.clip_samples)
    loader = build_loaders(config, store, clip)["train"]
    # fused, like audioclf's default: the comparison measures the loop, not the optimiser kernel
    opt = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay, fused=True)
    limit = config.trainer.limit_train_batches
    clips, t = 0, time.perf_counter()
    for epoch in range(config.trainer.max_epochs):
        # what Lightning and the task do at each epoch start: the sampler's order, the crops
        for obj in (loader.batch_sampler, loader.sampler, loader.dataset):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        for b, (x, y) in enumerate(loader):
            if limit is not None and b >= limit:
                break
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            clips += len(x)
    return clips, time.perf_counter() - t


def bench_training(store: Path, model: str, figures: Figures, *, epochs: int = 1, batch: int = 32,
                   batches: int | None = None, repeats: int = 1, overrides: Sequence[str] = ()) -> None:
    """audioclf's loop vs a bare loop: clips/s of each (the best of ``repeats``, runs
    alternating) and their ratio. ``batches`` limits each epoch (and turns validation off,
    so both loops do the same work)."""
    bare_rates, ours_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            config = _train_config(store, model, epochs, batch, Path(tmp), batches, overrides)
            clips, seconds = _bare_loop(config)
            bare_rates.append(clips / seconds)
            clips, seconds, _ = _audioclf_loop(config)
            ours_rates.append(clips / seconds)
    figures.add("training", model, f"bare PyTorch loop, batch {batch}", max(bare_rates), "clips/s")
    figures.add("training", model, f"audioclf loop, batch {batch}", max(ours_rates), "clips/s")
    figures.add("training", model, "audioclf / bare", max(ours_rates) / max(bare_rates), "ratio")


def bench_full_run(store: Path, figures: Figures, model: str = "cnn_lite", epochs: int = 30, batch: int = 32,
                   overrides: Sequence[str] = ()) -> Path | None:
    """``train`` end to end (validation every epoch) for ``epochs``; returns the best
    checkpoint. With fewer epochs than the target the time is also given per 30 epochs."""
    from audioclf.training.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        config = _train_config(store, model, epochs, batch, Path(tmp), None, ["data.test_split=test", *overrides])
        t = time.perf_counter()
        result = train(config)
        seconds = time.perf_counter() - t
        figures.add("full run", model, f"{epochs} epochs incl. validation and test", seconds, "s")
        if epochs != 30:
            figures.add("full run", model, "extrapolated to 30 epochs", seconds * 30 / epochs, "s")
        figures.add("full run", model, "test accuracy", float(result.test_metrics.get("accuracy", float("nan"))), "")
        keep = Path(tempfile.mkdtemp()) / "best.ckpt"
        if result.best_checkpoint:
            keep.write_bytes(Path(result.best_checkpoint).read_bytes())
            return keep
    return None


# --- inference --------------------------------------------------------------------------------


def _latency(fn: Any, x: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        fn(x)  # warm-up: allocations, kernel choice
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench_inference(name: str, figures: Figures, *, num_classes: int = 527, repeats: int = 5,
                    runtimes: Sequence[str] = ("torch", "onnx", "onnx-int8"), model: torch.nn.Module | None = None,
                    calibration: np.ndarray | None = None) -> None:
    """One clip (the model's own length) at a time: median latency and real-time factor
    per runtime; int8 also its top-1 agreement with float on the calibration clips
    (synthetic audio unless given)."""
    from audioclf.inference.export import _default_info, probe_audio
    from audioclf.inference.onnx_runtime import agreement, onnx_module
    from audioclf.models import create_model

    torch.manual_seed(0)
    net = (model if model is not None else create_model(name, num_classes)).eval()
    info = _default_info(net, name)
    n, rate = int(info["clip_samples"]), int(info["sample_rate"])
    x = torch.from_numpy(probe_audio(1, n, rate, seed=3))
    cal = calibration if calibration is not None else probe_audio(16, n, rate, seed=4)
    with torch.no_grad():
        ref = net(torch.from_numpy(cal)).numpy()
    for rt in runtimes:
        if rt == "torch":
            fn: Any = net
        elif rt == "compile":
            import copy

            fn = copy.deepcopy(net)
            fn.compile()
        else:
            fn = onnx_module(net, info, rt, calibration=cal)
        seconds = _latency(fn, x, repeats)
        figures.add("inference", name, f"{rt}: latency of one {n / rate:.2g}-s clip", seconds * 1000, "ms")
        figures.add("inference", name, f"{rt}: real-time factor", n / rate / seconds, "x")
        if rt == "onnx-int8":
            with torch.no_grad():
                fig = agreement(ref, fn(torch.from_numpy(cal)).numpy())
            figures.add("inference", name, f"int8 vs float top-1 agreement ({len(cal)} clips)", fig["top1_agreement"], "")


def bench_int8_accuracy(checkpoint: Path, store: Path, figures: Figures, calibration_clips: int = 64) -> None:
    """Test-split accuracy of a trained checkpoint with PyTorch, ONNX Runtime and int8
    (calibrated on training clips): the accuracy change quantisation costs."""
    from audioclf.data.dataset import ClipDataset
    from audioclf.data.store import Store
    from audioclf.inference.onnx_runtime import agreement, onnx_module
    from audioclf.inference.onnx_runtime import calibration_clips as training_clips
    from audioclf.models.bundle import load_bundle_model

    model, info = load_bundle_model(checkpoint)
    s = Store(store)
    test = ClipDataset(s, s.indices(split="test"), int(info["clip_samples"]))
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = np.array([int(test[i][1]) for i in range(len(test))])
    cal = training_clips(store, int(info["clip_samples"]), calibration_clips, split="train")
    with torch.no_grad():
        ref = model(x).numpy()
    q = onnx_module(model, info, "onnx-int8", calibration=cal)
    with torch.no_grad():
        got = q(x).numpy()
    acc_f, acc_q = float((ref.argmax(1) == y).mean()), float((got.argmax(1) == y).mean())
    fig = agreement(ref, got)
    model_name = str(info.get("model", "?"))
    figures.add("int8 accuracy", model_name, f"float test accuracy ({len(y)} clips)", acc_f, "")
    figures.add("int8 accuracy", model_name, "int8 test accuracy", acc_q, "")
    figures.add("int8 accuracy", model_name, "accuracy change (int8 - float)", acc_q - acc_f, "")
    figures.add("int8 accuracy", model_name, "int8 vs float top-1 agreement", fig["top1_agreement"], "")
    k = next(k for k in fig if k.endswith("_overlap"))
    figures.add("int8 accuracy", model_name, f"int8 vs float {k.replace('_', '-')}", fig[k], "")


# --- all of it --------------------------------------------------------------------------------


def run_benchmark(models: Sequence[str] = ("cnn_lite",), *, clips: int = 600, epochs: int = 2, batches: int = 10,
                  full_epochs: int = 0, read_workers: Sequence[int] = (0, 1), repeats: int = 1,
                  inference_repeats: int = 5, work_dir: str | Path | None = None) -> Figures:
    """Everything above for ``models`` (each stage's settings are small by default: the
    command is meant to run in minutes). ``full_epochs`` > 0 also trains ``cnn_lite``
    end to end on the folder dataset and measures int8's accuracy change on it."""
    from audioclf.models import create_model

    figures = Figures()
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        root = Path(tmp)
        folder = make_folder_dataset(root / "folder", clips=clips)
        store = bench_prepare(folder, root / "folder.h5", figures)
        bench_store_reads(store, figures, workers=read_workers)
        for name in models:
            probe = create_model(name, 10)
            if int(probe.sample_rate) == 16000 and int(probe.clip_samples) == 16000:
                model_store = store
            else:  # a store at the model's own rate and clip length
                model_store = make_store(root / f"{name}.h5", max(8 * batches, 80), 10, int(probe.clip_samples),
                                         int(probe.sample_rate))
            batch = 32 if int(probe.clip_samples) <= 32000 else 8
            bench_training(model_store, name, figures, epochs=epochs, batch=batch, batches=batches, repeats=repeats)
            bench_inference(name, figures, repeats=inference_repeats)
        if full_epochs:
            best = bench_full_run(store, figures, epochs=full_epochs)
            if best is not None:
                bench_int8_accuracy(best, store, figures)
    return figures


# --- against the research code ----------------------------------------------------------------


def _reference_cnn14(directory: Path) -> torch.nn.Module:
    """``Cnn14`` from a checkout of qiuqiangkong/audioset_tagging_cnn (its ``pytorch/models.py``,
    which imports torchlibrosa), at the published AudioSet settings."""
    import importlib.util
    import sys

    src = Path(directory) / "pytorch" / "models.py"
    if not src.is_file():
        raise FileNotFoundError(f"--reference {directory}: no pytorch/models.py (a PANNs checkout is expected)")
    sys.path.insert(0, str(src.parent))  # its own `from pytorch_utils import ...`
    try:
        spec = importlib.util.spec_from_file_location("panns_reference_models", src)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError as err:
        raise MissingDependencyError(f"--reference {directory}: the PANNs code needs {err.name} (pip install --no-deps torchlibrosa)") from err
    finally:
        sys.path.remove(str(src.parent))
    return module.Cnn14(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000,
                        classes_num=527)


def bench_reference_panns(directory: str | Path, figures: Figures, *, repeats: int = 3, rounds: int = 2,
                          runtimes: Sequence[str] = ("torch", "onnx", "onnx-int8")) -> None:
    """CNN14 on one 10-s clip: the research code against audioclf's runtimes, with the same
    (randomly initialised, seeded) weights copied from the reference into audioclf's model by
    their published key names. Rounds alternate over all runtimes; the median of each is kept.
    Outputs are compared as probabilities (the reference's ``clipwise_output``)."""
    from audioclf.inference.export import _default_info, probe_audio
    from audioclf.inference.onnx_runtime import agreement, onnx_module
    from audioclf.models import create_model
    from audioclf.models.checkpoints import load_state_into

    torch.manual_seed(0)
    ref = _reference_cnn14(Path(directory)).eval()
    ours = create_model("cnn14", 527).eval()
    state = ours.remap_checkpoint({"model": ref.state_dict()})
    load_state_into(ours, state, source="reference Cnn14")
    info = _default_info(ours, "cnn14")
    x = torch.from_numpy(probe_audio(1, 320000, 32000, seed=3))
    cal = probe_audio(8, 320000, 32000, seed=4)
    fns: dict[str, Any] = {"reference": lambda w: ref(w)["clipwise_output"]}
    for rt in runtimes:
        net = ours if rt == "torch" else onnx_module(ours, info, rt, calibration=cal)
        fns[rt] = lambda w, net=net: torch.sigmoid(net(w))
    with torch.no_grad():
        want = fns["reference"](torch.from_numpy(cal)).numpy()
        outs = {rt: fns[rt](torch.from_numpy(cal)).numpy() for rt in runtimes}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(_latency(fn, x, repeats))
    ref_s = float(np.median(times["reference"]))
    figures.add("vs PANNs code", "cnn14", "reference: latency of one 10-s clip", ref_s * 1000, "ms")
    for rt in runtimes:
        s = float(np.median(times[rt]))
        figures.add("vs PANNs code", "cnn14", f"{rt}: latency of one 10-s clip", s * 1000, "ms")
        figures.add("vs PANNs code", "cnn14", f"{rt}: speed / reference", ref_s / s, "x")
        figures.add("vs PANNs code", "cnn14", f"{rt}: max |prob - reference prob|", float(np.abs(outs[rt] - want).max()), "")
        if rt == "onnx-int8":
            fig = agreement(np.log(want + 1e-12), np.log(outs[rt] + 1e-12))
            figures.add("vs PANNs code", "cnn14", "int8 top-1 agreement (8 clips)", fig["top1_agreement"], "")
            figures.add("vs PANNs code", "cnn14", "int8 top-5 overlap (8 clips)", fig["top5_overlap"], "")


def _reference_eat(directory: Path, num_classes: int, tokens: int) -> torch.nn.Module:
    """EAT-S (``SoundNetRaw``) from a checkout of Alibaba-MIIL/AudioClassfication
    (``modules/soundnet.py``, plain PyTorch), at the paper's EAT-S sizes."""
    import importlib.util

    src = Path(directory) / "modules" / "soundnet.py"
    if not src.is_file():
        raise FileNotFoundError(f"--reference {directory}: no modules/soundnet.py (an EAT checkout is expected)")
    spec = importlib.util.spec_from_file_location("eat_reference_soundnet", src)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # plain PyTorch: no sys.path entry needed, unlike PANNs
    return module.SoundNetRaw(nf=16, clip_length=tokens, embed_dim=128, n_layers=4, nhead=8, factors=[4, 4, 4, 4],
                              n_classes=num_classes, dim_feedforward=512)


def bench_reference_eat(directory: str | Path, figures: Figures, *, batch: int = 8, rounds: int = 5,
                        num_classes: int = 50) -> None:
    """EAT-S training steps (5.2-s clips at 22.05 kHz, ESC-50's 50 classes): the research
    code's model with the optimiser its trainer builds (``torch.optim.AdamW``, torch's
    default implementation) against audioclf's ``eat_s`` with the optimiser
    :class:`~audioclf.training.task.ClassificationTask` builds from the default config,
    from the same weights (copied by their published names) and the same batches. Steps
    alternate; the median step time of each is kept. The forward outputs of the two models
    (eval mode) are compared first."""
    from audioclf.config import load_config
    from audioclf.models import create_model
    from audioclf.training.task import ClassificationTask

    torch.manual_seed(0)
    ours = create_model("eat_s", num_classes)
    samples = int(ours.clip_samples)
    ref = _reference_eat(Path(directory), num_classes, int(ours.num_tokens))
    ours.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, samples, generator=g) * 0.1
    y = torch.randint(0, num_classes, (batch,), generator=g)
    ref.eval()
    ours.eval()
    with torch.no_grad():
        diff = float((ref(x[:2].unsqueeze(1)) - ours(x[:2])).abs().max())
    ref.train()
    ours.train()
    cfg = load_config(None, ["optim.scheduler=none", "optim.weight_decay=1e-5", "optim.lr=1e-3"])
    task = ClassificationTask(ours, model_name="eat_s", model_settings={}, label_names=[str(i) for i in range(num_classes)],
                              multi_label=False, clip_samples=samples, optim=cfg.optim)
    opts = {"reference": torch.optim.AdamW(ref.parameters(), lr=1e-3, weight_decay=1e-5),
            "audioclf": task.configure_optimizers()}
    # the reference reads (B, 1, samples); its trainer's loss is plain cross-entropy
    steps = {"reference": lambda: torch.nn.functional.cross_entropy(ref(x.unsqueeze(1)), y),
             "audioclf": lambda: task.loss_fn(ours(x), y)}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for r in range(rounds + 1):
        for k, loss_of in steps.items():
            t = time.perf_counter()
            loss = loss_of()
            opts[k].zero_grad(set_to_none=True)
            loss.backward()
            opts[k].step()
            if r:  # the first round warms both up
                times[k].append(time.perf_counter() - t)
    ref_s, our_s = (float(np.median(times[k])) for k in ("reference", "audioclf"))
    what = f"batch {batch}, {samples / 22050:.1f}-s clips"
    figures.add("vs EAT code", "eat_s", f"reference: training clips/s ({what})", batch / ref_s, "clips/s")
    figures.add("vs EAT code", "eat_s", f"audioclf: training clips/s ({what})", batch / our_s, "clips/s")
    figures.add("vs EAT code", "eat_s", "audioclf / reference", ref_s / our_s, "x")
    figures.add("vs EAT code", "eat_s", "max |logit - reference logit| (eval, 2 clips)", diff, "")

