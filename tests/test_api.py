"""The top-level API: ``from audioclf import Classifier, create_model, train`` and
``audioclf.tag``, imported lazily so ``import audioclf`` stays light."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import soundfile as sf
import torch

import audioclf


def test_import_audioclf_is_light() -> None:
    code = ("import sys, audioclf; heavy = [m for m in ('torch', 'lightning', 'transformers', 'torchmetrics') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_names_resolve_to_the_library_objects() -> None:
    from audioclf.inference.classifier import Classifier
    from audioclf.models.registry import create_model
    from audioclf.training.trainer import RunResult  # noqa: F401 - train returns it

    assert audioclf.Classifier is Classifier and audioclf.create_model is create_model
    assert callable(audioclf.train) and callable(audioclf.tag)
    assert {"Classifier", "create_model", "train", "tag"} <= set(dir(audioclf))
    try:
        audioclf.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("unknown attribute did not raise")


def test_tag_labels_a_file_with_a_published_checkpoint(tmp_path) -> None:
    from tests.golden import load_golden, rule_state_dict

    state = rule_state_dict(load_golden("panns_cnn6"))
    state["fc_audioset.weight"] = torch.zeros(527, 512)
    state["fc_audioset.bias"] = torch.zeros(527)
    state["fc_audioset.bias"][74] = 4.0  # /m/0bt9lr in class_labels_indices.csv: "Dog"
    path = tmp_path / "Cnn6_mAP=0.343.pth"
    torch.save({"model": state}, path)
    clip = tmp_path / "a.wav"
    sf.write(clip, 0.01 * np.ones(32000, np.float32), 32000)
    preds = audioclf.tag(str(clip), model=str(path), top_k=3)
    assert preds[0].label == "Dog" and len(preds) == 3
    # the model is kept for the next call
    assert audioclf.tag(str(clip), model=str(path), top_k=1)[0].label == "Dog"
    assert audioclf.api._classifier.cache_info().hits >= 1
