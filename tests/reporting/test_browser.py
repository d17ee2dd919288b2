"""The report in a real headless browser (Debian's chromium via Playwright)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audioclf.reporting import write_report
from tests.reporting.support import ARTIFACTS, ConsoleLog, TinyRun, exercise_player


def test_report_player_in_a_browser(run: TinyRun, recording: Path, browser: Any, tmp_path: Path) -> None:
    report = write_report(run.run_dir, tmp_path / "report.html", recording)
    # offline: the page must not need the network; any request leaving file:// fails the test
    context = browser.new_context(viewport={"width": 1200, "height": 900}, offline=True)
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:", "blob:")) else None)
    console = ConsoleLog(page)
    try:
        page.goto(report.as_uri())
        assert page.title().startswith("audioclf report")
        # the run's figures render as images with a size
        for alt in ("training curves",):
            box = page.locator(f'img[alt="{alt}"]').bounding_box()
            assert box and box["width"] > 200 and box["height"] > 100
        exercise_player(page, ARTIFACTS / "report-player.png", "#audio")
        # one metrics table per split, each named by its split, with where its numbers come from
        heads = page.locator("#metrics .split-table h3").all_inner_texts()
        assert heads and len(heads) == len(set(heads)) and all(h.endswith(" split") for h in heads), heads
        assert page.locator("#metrics .split-table .source").count() == len(heads)
        # the weights say what they are, in words
        weights = page.locator("#run tr", has_text="weights").inner_text()
        assert "raw: the optimiser's weights" in weights or "EMA: exponential moving average" in weights, weights
        page.screenshot(path=str(ARTIFACTS / "report-full.png"), full_page=True)
    finally:
        context.close()
    assert console.errors == [], console.errors
    assert outside == [], f"the report fetched from outside the file: {outside}"
