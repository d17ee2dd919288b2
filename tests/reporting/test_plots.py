from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from audioclf.metrics import compute_metrics
from audioclf.reporting import plots
from audioclf.reporting.runs import History
from tests.reporting.support import make_timeline

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the PNG header."""
    assert data.startswith(PNG_SIGNATURE)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def lines_by_label(ax) -> dict[str, tuple[list[float], list[float]]]:
    return {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.lines if not ln.get_label().startswith("_")}


def test_training_curves_draw_each_series_per_epoch() -> None:
    h = History({
        "train/loss_epoch": [(0, 2.0), (1, 1.5), (2, 1.2)],
        "val/loss": [(0, 2.2), (1, 1.7), (2, 1.6)],
        "val/mAP": [(0, 0.1), (1, 0.3), (2, 0.4)],
        "val/overfit_gap_pct": [(0, 10.0), (1, 13.3), (2, 33.3)],
    })
    fig = plots.plot_training_curves(h)
    loss_ax, quality_ax, gap_ax = fig.axes
    loss = lines_by_label(loss_ax)
    assert loss["train loss"] == ([1, 2, 3], [2.0, 1.5, 1.2]), "epochs are shown from 1"
    assert loss["val loss"][1] == [2.2, 1.7, 1.6]
    assert lines_by_label(quality_ax) == {"val mAP": ([1, 2, 3], [0.1, 0.3, 0.4])}
    assert lines_by_label(gap_ax)["overfit gap (val vs train loss, %)"][1] == [10.0, 13.3, 33.3]
    w, h_px = png_size(plots.figure_png(fig))
    assert w > 300 and h_px > 200
    # each panel says what it shows, in type that stays readable when the page scales it down
    assert [ax.get_title() for ax in fig.axes] == ["Loss per epoch", "Validation quality per epoch", "Overfitting gap"]
    for ax in fig.axes:
        assert ax.title.get_fontsize() >= 12 and ax.xaxis.label.get_fontsize() >= 11
        assert min(t.get_fontsize() for t in ax.get_legend().get_texts()) >= 10


def test_training_curves_leave_out_panels_without_data() -> None:
    fig = plots.plot_training_curves(History({"val/accuracy": [(0, 0.5)], "train/loss_epoch": [(0, 1.0)]}))
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="no per-epoch loss or validation metrics"):
        plots.plot_training_curves(History({"lr-AdamW": [(0, 0.001)]}))


def test_confusion_matrix_rows_are_normalised() -> None:
    labels = ["a", "b", "c"]
    m = [[3, 1, 0], [0, 2, 2], [0, 0, 0]]
    fig = plots.plot_confusion_matrix(m, labels)
    shown = np.asarray(fig.axes[0].images[0].get_array())
    np.testing.assert_allclose(shown, [[0.75, 0.25, 0], [0, 0.5, 0.5], [0, 0, 0]])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == labels
    counts = {t.get_text() for t in fig.axes[0].texts}
    assert counts == {"3", "1", "2"}, "non-zero counts are written in their cells"
    with pytest.raises(ValueError, match=r"\(2, 2\).*expected \(3, 3\)"):
        plots.plot_confusion_matrix([[1, 0], [0, 1]], labels)


def test_per_class_bars_sorted_and_classes_without_value_left_out() -> None:
    per_class = {"dog": {"ap": 0.9}, "cat": {"ap": 0.2}, "owl": {"ap": None}, "cow": {"ap": 0.5}}
    fig = plots.plot_per_class_ap(per_class)
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    widths = [p.get_width() for p in ax.patches]
    assert names == ["cat", "cow", "dog"], "best at the top (matplotlib lists bars bottom-up)"
    assert widths == pytest.approx([0.2, 0.5, 0.9])
    assert "1 class(es) without a value" in ax.get_title()


def test_per_class_bars_show_best_and_worst_when_many() -> None:
    values = {f"c{i:03d}": i / 200 for i in range(200)}
    ax = plots.plot_per_class_bars(values, "AP", max_classes=10).axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()][::-1]
    assert names[:5] == ["c199", "c198", "c197", "c196", "c195"]
    assert names[-5:] == ["c004", "c003", "c002", "c001", "c000"]
    assert "best 5 and worst 5 of 200" in ax.get_title()
    with pytest.raises(ValueError, match="no per-class AP values"):
        plots.plot_per_class_bars({"a": None}, "AP")


def test_evaluation_figures_follow_the_task() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(40, 4, generator=g)
    single = compute_metrics(scores, torch.arange(40) % 4, False, list("abcd"), per_class=True)
    assert set(plots.evaluation_figures(single)) == {"confusion_matrix", "per_class_f1"}
    targets = (torch.rand(40, 4, generator=g) > 0.6).long()
    multi = compute_metrics(scores, targets, True, list("abcd"), per_class=True)
    assert set(plots.evaluation_figures(multi)) == {"per_class_ap"}
    assert plots.evaluation_figures({"accuracy": 0.5}) == {}


def test_display_spectrogram_puts_a_tone_in_the_right_band() -> None:
    sr = 16000
    t = np.arange(2 * sr) / sr
    low = plots.display_spectrogram(np.sin(2 * np.pi * 300 * t).astype(np.float32), sr)
    high = plots.display_spectrogram(np.sin(2 * np.pi * 5000 * t).astype(np.float32), sr)
    assert low.db.shape[0] == 80
    assert low.duration == pytest.approx(2.0)
    assert low.hop_seconds == pytest.approx(0.01)
    low_band = int(low.db[:, 50:150].mean(1).argmax())
    high_band = int(high.db[:, 50:150].mean(1).argmax())
    assert low_band < 30 < high_band, (low_band, high_band)


def test_display_spectrogram_stays_narrow_for_long_audio() -> None:
    wave = np.random.default_rng(0).standard_normal(16000 * 120).astype(np.float32) * 0.1
    spec = plots.display_spectrogram(wave, 16000, max_columns=1000)
    assert spec.columns <= 1001
    assert spec.hop_seconds * spec.columns == pytest.approx(120, rel=0.01)
    with pytest.raises(ValueError, match="non-empty mono"):
        plots.display_spectrogram(np.zeros((2, 100), np.float32), 16000)


def test_spectrogram_png_is_one_pixel_per_column_and_band() -> None:
    spec = plots.display_spectrogram(np.random.default_rng(1).standard_normal(8000).astype(np.float32), 16000, n_mels=40)
    png = plots.spectrogram_png(spec)
    assert png_size(png) == (spec.columns, 40)
    from matplotlib.image import imread

    image = imread(io.BytesIO(png))
    assert image[..., :3].std() > 0.01, "a spectrogram of noise is not one flat colour"


def test_frame_edges_are_midpoints_between_centres() -> None:
    np.testing.assert_allclose(plots.frame_edges([0.5, 1.0, 1.5], 2.0), [0, 0.75, 1.25, 2.0])
    np.testing.assert_allclose(plots.frame_edges([0.3], 0.6), [0, 0.6])
    with pytest.raises(ValueError, match="at least one frame"):
        plots.frame_edges([], 1.0)


def test_plot_timeline_shows_the_best_classes_under_the_spectrogram() -> None:
    frames, labels = 7, ["quiet", "loud", "mid", "never"]
    scores = np.zeros((frames, 4))
    scores[:, 0] = 0.05
    scores[3, 1] = 0.95
    scores[:, 2] = 0.4
    tl = make_timeline(scores, labels)
    spec = plots.display_spectrogram(np.zeros(int(tl.duration * 16000), np.float32) + 1e-3, 16000)
    fig = plots.plot_timeline(spec, tl, top_k=3)
    spec_ax, strip_ax = fig.axes[:2]
    assert [t.get_text() for t in strip_ax.get_yticklabels()] == ["loud", "mid", "quiet"]
    assert strip_ax.get_xlim() == pytest.approx((0, tl.duration))
    assert spec_ax.get_xlim() == pytest.approx((0, tl.duration)), "one time axis"
    mesh = strip_ax.collections[0]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(3, frames)[0], scores[:, 1])
    # the static figure labels frequency in Hz and has colour bars for level (dB) and score
    assert [t.get_text() for t in spec_ax.get_yticklabels()][-1] == "4 kHz"
    assert spec_ax.get_ylabel() == "frequency (mel scale)"
    assert {ax.get_ylabel() for ax in fig.axes[2:]} == {"level (dB)", "score"}
