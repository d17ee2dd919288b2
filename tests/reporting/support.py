"""Shared by the reporting and service tests: a tiny trained run, test audio, and a real
headless browser (Debian's chromium driven by Playwright) with the player checks."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
INSTALL_HINT = ("install them with: apt-get update && apt-get install -y chromium chromium-driver; "
                "pip install playwright (no `playwright install`: the tests use /usr/bin/chromium)")
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class TinyRun:
    store: Path
    run_dir: Path
    checkpoint: Path


def tiny_run(base: Path) -> TinyRun:
    """A 2-epoch cnn_lite run on a 72-clip synthetic store, made once under ``base``
    (the session's temporary root) and reused by every test module that asks."""
    root = base / "audioclf-tiny-run"
    done = root / "done.txt"
    if done.is_file():
        run_dir = Path(done.read_text().strip())
        return TinyRun(root / "s.h5", run_dir, run_dir / "checkpoints" / "best.ckpt")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    from audioclf.config import load_config
    from audioclf.data.catalog import create_source
    from audioclf.data.prepare import prepare_dataset
    from audioclf.training.trainer import train

    store = root / "s.h5"
    prepare_dataset(create_source("synthetic", clips_per_class=6, seconds=1.0), store)
    result = train(load_config(None, [
        f"data.store={store}", "trainer.max_epochs=2", f"output_dir={root / 'runs'}",
        "trainer.progress_bar=false", "model.settings={channels: [8, 16]}",
    ]))
    assert result.best_checkpoint is not None
    done.write_text(str(result.run_dir))
    return TinyRun(store, result.run_dir, result.best_checkpoint)


def make_timeline(scores: np.ndarray, labels: list[str], window: float = 1.0, hop: float = 0.5) -> Any:
    """A single-label ``Timeline`` with hand-made scores ``(frames, classes)``."""
    from audioclf.inference.timeline import Timeline

    starts = np.arange(len(scores)) * hop
    duration = float(starts[-1] + window)
    return Timeline(starts, starts + window, np.asarray(scores, np.float32), labels, False, duration, window, hop)


def synthetic_recording(labels: list[str], seed: int = 0, seconds: float = 1.0) -> np.ndarray:
    """Consecutive synthetic events, one second each: a recording with changing content."""
    from audioclf.data.catalog.synthetic import synthesize

    return np.concatenate([synthesize(label, 1000 + seed + i, SAMPLE_RATE, seconds) for i, label in enumerate(labels)])


def write_recording(path: Path, labels: list[str], seed: int = 0) -> Path:
    from audioclf.audio.io import save_audio

    save_audio(path, synthetic_recording(labels, seed), SAMPLE_RATE)
    return path


# --- the browser -----------------------------------------------------------------------


def launch_browser(playwright: Any) -> Any:
    """Headless chromium; fails (never skips) with the install commands when missing."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: the browser tests need Debian's chromium; {INSTALL_HINT}")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def start_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"playwright (Python) is not installed: the browser tests need it; {INSTALL_HINT}")
    return sync_playwright().start()


class ConsoleLog:
    """Console errors and uncaught exceptions of a page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))


def exercise_player(page: Any, screenshot: Path, section: str) -> None:
    """The player's contract, checked in the page: the spectrogram and the timeline are
    drawn, pressing play moves the playhead with the audio, clicking the spectrogram
    seeks. Saves a screenshot of ``section`` (a CSS selector) to ``screenshot``."""
    page.wait_for_selector(".acp-timeline")
    page.wait_for_function("document.querySelector('img.acp-spec').complete")
    spec = page.evaluate("""() => { const i = document.querySelector('img.acp-spec'); const r = i.getBoundingClientRect();
        return {natural: i.naturalWidth, w: r.width, h: r.height}; }""")
    assert spec["natural"] > 0 and spec["w"] > 100 and spec["h"] > 50, f"spectrogram not shown: {spec}"

    strips = page.evaluate("""() => { const c = document.querySelector('canvas.acp-timeline');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let painted = 0; const colours = new Set();
        for (let i = 0; i < d.length; i += 4) { if (d[i + 3] > 0) { painted++; colours.add(d[i] * 65536 + d[i + 1] * 256 + d[i + 2]); } }
        const r = c.getBoundingClientRect();
        return {w: r.width, h: r.height, painted: painted / (d.length / 4), colours: colours.size}; }""")
    assert strips["w"] > 100 and strips["h"] > 10, f"timeline canvas has no size: {strips}"
    assert strips["painted"] > 0.8, f"timeline canvas mostly blank: {strips}"
    assert strips["colours"] > 3, f"timeline heat strips all one colour: {strips}"
    assert page.locator(".acp-rowlabel").count() >= 1

    # audio ready, playhead at the start
    page.wait_for_function("document.getElementById('acp-audio').readyState >= 1")
    duration = page.evaluate("document.getElementById('acp-audio').duration")
    assert duration > 1.0
    head_x0 = page.locator(".acp-playhead").bounding_box()["x"]

    page.evaluate("document.getElementById('acp-audio').play()")
    page.wait_for_function("document.getElementById('acp-audio').currentTime > 0.6", timeout=15000)
    page.evaluate("document.getElementById('acp-audio').pause()")
    state = page.evaluate("""() => { const a = document.getElementById('acp-audio');
        const p = document.querySelector('.acp-plot').getBoundingClientRect();
        const h = document.querySelector('.acp-playhead').getBoundingClientRect();
        return {t: a.currentTime, left: p.left, width: p.width, head: h.left + h.width / 2}; }""")
    assert state["head"] - head_x0 > 5, f"playhead did not move while playing: {head_x0} -> {state}"
    expected = state["left"] + state["t"] / duration * state["width"]
    assert abs(state["head"] - expected) < 4, f"playhead not at the audio's time: {state}, expected x {expected:.1f}"

    # click at 75 % of the spectrogram: the audio seeks there, the playhead follows
    spec_img = page.locator("img.acp-spec")
    spec_img.scroll_into_view_if_needed()
    box = spec_img.bounding_box()
    spec_img.click(position={"x": 0.75 * box["width"], "y": box["height"] / 2})
    page.wait_for_function(f"Math.abs(document.getElementById('acp-audio').currentTime - {0.75 * duration}) < {0.05 * duration}")
    head = page.locator(".acp-playhead").bounding_box()
    assert abs(head["x"] + head["width"] / 2 - (box["x"] + 0.75 * box["width"])) < 4

    # a click on the timeline seeks too
    strip = page.locator("canvas.acp-timeline")
    strip.click(position={"x": 0.25 * strip.bounding_box()["width"], "y": 5})
    page.wait_for_function(f"Math.abs(document.getElementById('acp-audio').currentTime - {0.25 * duration}) < {0.05 * duration}")

    check_player_labels(page)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.locator(section).screenshot(path=str(screenshot))


def check_player_labels(page: Any) -> None:
    """What the player's pictures mean is on the page: a frequency axis in Hz beside the
    spectrogram (ticks inside its height, low at the bottom), colour keys for the
    spectrogram (dB) and the score strips (0-1), and labelled times in the readout."""
    ticks = page.evaluate("""() => { const img = document.querySelector('img.acp-spec').getBoundingClientRect();
        return {img: {top: img.top, bottom: img.bottom},
                ticks: [...document.querySelectorAll('.acp-freqtick')].map(t => { const r = t.getBoundingClientRect();
                    return {text: t.textContent, y: (r.top + r.bottom) / 2, w: r.width, visible: r.height > 0}; })}; }""")
    texts = [t["text"] for t in ticks["ticks"]]
    assert len(texts) >= 3 and all(t.endswith("Hz") for t in texts), f"no frequency axis: {texts}"
    assert all(t["visible"] and t["w"] > 10 for t in ticks["ticks"])
    ys = [t["y"] for t in ticks["ticks"]]
    assert all(ticks["img"]["top"] - 1 <= y <= ticks["img"]["bottom"] + 1 for y in ys), (ys, ticks["img"])
    assert ys == sorted(ys, reverse=True), "higher frequencies must sit higher"  # listed low to high
    keys = page.evaluate("""() => [...document.querySelectorAll('.acp-key')].map(k => { const bar = k.querySelector('.acp-keybar');
        const r = bar.getBoundingClientRect(); return {text: k.textContent, w: r.width, h: r.height,
        bg: getComputedStyle(bar).backgroundImage}; })""")
    assert len(keys) == 2, keys
    spec_key, score_key = keys
    assert spec_key["text"].startswith("spectrogram level") and spec_key["text"].endswith(" dB"), spec_key
    assert score_key["text"] == "class score (strips)01", score_key
    assert all(k["w"] > 100 and k["h"] > 5 and k["bg"].startswith("linear-gradient") for k in keys), keys
    readout = page.inner_text(".acp-time")
    assert re.fullmatch(r"playhead \d+:\d\d\.\d / \d+:\d\d\.\d", readout), readout
    strip = page.locator("canvas.acp-timeline")
    box = strip.bounding_box()
    strip.hover(position={"x": 0.5 * box["width"], "y": 5})
    hover = page.inner_text(".acp-hover")
    assert re.fullmatch(r"pointer \d+:\d\d\.\d · .+ score \d\.\d{3}", hover), hover
