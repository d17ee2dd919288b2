"""The top-level Python API (``import audioclf``): a few calls that cover the common paths.

    import audioclf
    audioclf.tag("dog.wav", model="panns-cnn14", top_k=5)      # published weights, AudioSet names
    clf = audioclf.Classifier.from_pretrained("runs/esc50-.../checkpoints/best.ckpt")
    res = audioclf.train("configs/esc50/cnn14.yaml", "trainer.max_epochs=3")
    net = audioclf.create_model("cnn14", num_classes=50, pretrained="Cnn14_mAP=0.431.pth")
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audioclf.config import Config
    from audioclf.inference.classifier import Classifier, Prediction
    from audioclf.training.trainer import RunResult

DEFAULT_TAGGER = "panns-cnn14"


def train(config: Config | str | Path | None = None, *overrides: str, **kwargs: Any) -> RunResult:
    """Train from a :class:`~audioclf.config.Config`, or a YAML recipe (None: the defaults)
    with dotted ``overrides`` (``"trainer.max_epochs=3"``); ``kwargs`` go to
    :func:`audioclf.training.trainer.train` (``run_dir``, ``callbacks``)."""
    from audioclf.config import Config, load_config
    from audioclf.training.trainer import train as run

    if not isinstance(config, Config):
        config = load_config(config, list(overrides))
    elif overrides:
        raise ValueError("overrides go with a recipe path; apply them to a Config before passing it")
    return run(config, **kwargs)


@functools.lru_cache(maxsize=4)
def _classifier(model: str, offline: bool, device: str) -> Classifier:
    from audioclf.inference.classifier import Classifier

    return Classifier.from_pretrained(model, offline=offline, device=device)


def tag(
    audio: str | Path | Any,
    model: str = DEFAULT_TAGGER,
    top_k: int = 5,
    *,
    sample_rate: int | None = None,
    offline: bool = False,
    device: str = "cpu",
) -> list[Prediction]:
    """Ranked labels of a file (or an array at ``sample_rate``) from any model source
    (default: the published PANNs CNN14 with AudioSet names). The model is loaded once and
    kept for later calls with the same source."""
    return _classifier(str(model), offline, device).predict(audio, top_k=top_k, sample_rate=sample_rate)
