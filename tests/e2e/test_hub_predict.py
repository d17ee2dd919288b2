"""Models named by Hub id or directory, end to end through ``audioclf predict`` and
``Classifier.from_pretrained``, against the local Hub stand-in."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from audioclf.cli import main
from audioclf.inference import Classifier
from audioclf.models.hub import save_pretrained
from tests.models.test_hub import AST_LABELS, lite, tiny_ast_dir

pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter")


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, np.random.default_rng(5).uniform(-0.5, 0.5, 24000).astype(np.float32), 16000)
    return path


def predicted(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def expected(model, info, clip, top_k=3):
    return [p.to_dict() for p in Classifier(model, info).predict(clip, top_k=top_k)]


def test_predict_hf_id_and_revision(hub, tmp_path, clip, capsys):
    first, info = lite(0)
    second, _ = lite(1)
    hub.commit("me/lite", {"": save_pretrained(first, info, tmp_path / "1")})
    hub.tag("me/lite", "v1")
    hub.commit("me/lite", {"": save_pretrained(second, info, tmp_path / "2")})
    want1, want2 = expected(first, info, clip), expected(second, info, clip)
    assert want1 != want2
    assert predicted(capsys, ["predict", "hf:me/lite", str(clip), "--top-k", "3", "--json"])[str(clip)] == want2
    assert predicted(capsys, ["predict", "hf:me/lite@v1", str(clip), "--top-k", "3", "--json"])[str(clip)] == want1
    # cached: offline gives the same, an uncached revision names what is missing
    assert predicted(capsys, ["predict", "hf:me/lite@v1", str(clip), "--top-k", "3", "--json", "--offline"])[str(clip)] == want1
    assert main(["predict", "hf:me/lite@v9", str(clip), "--offline"]) == 2
    assert "revision 'v9'" in " ".join(capsys.readouterr().err.split())
    clf = Classifier.from_pretrained("hf:me/lite@v1")
    assert np.array_equal(clf.scores(clip), Classifier(first, info).scores(clip))


def test_predict_a_directory_audioclf_format_and_transformers_ast(tmp_path, clip, capsys):
    model, info = lite(0)
    d = save_pretrained(model, info, tmp_path / "lite")
    assert predicted(capsys, ["predict", str(d), str(clip), "--top-k", "3", "--json"])[str(clip)] == expected(model, info, clip)

    tiny_ast_dir(tmp_path / "ast")
    out = predicted(capsys, ["predict", str(tmp_path / "ast"), str(clip), "--top-k", "4", "--json"])[str(clip)]
    assert sorted(p["label"] for p in out) == sorted(AST_LABELS.values())  # named through id2label
    scores = Classifier.from_pretrained(tmp_path / "ast").scores(clip)
    assert [p["label"] for p in out] == [AST_LABELS[i] for i in np.argsort(-scores, kind="stable")]


def test_predict_hf_transformers_ast_by_hub_id(hub, tmp_path, clip, capsys):
    tiny_ast_dir(tmp_path / "ast")
    hub.commit("MIT/tiny-ast", {"": tmp_path / "ast"})
    out = predicted(capsys, ["predict", "hf:MIT/tiny-ast", str(clip), "--top-k", "2", "--json"])[str(clip)]
    local = Classifier.from_pretrained(tmp_path / "ast").predict(clip, top_k=2)
    assert out == [p.to_dict() for p in local]


def test_predict_a_checkpoint_file_in_a_hub_repo_and_a_timeline(hub, tmp_path, clip, capsys):
    import torch

    model, info = lite(0)
    ckpt = tmp_path / "best.ckpt"
    torch.save({"audioclf": info, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    hub.commit("me/ckpts", {"runs/esc/best.ckpt": ckpt, "README.md": "checkpoints"})
    out = predicted(capsys, ["predict", "hf:me/ckpts/runs/esc/best.ckpt", str(clip), "--top-k", "3", "--json"])
    assert out[str(clip)] == expected(model, info, clip)
    assert hub.count("GET", r"/me/ckpts/resolve/.*/README.md") == 0  # one file, not the snapshot

    hub.commit("me/lite", {"": save_pretrained(model, info, tmp_path / "m")})
    tl = predicted(capsys, ["predict", "hf:me/lite", str(clip), "--timeline", "--hop", "0.25", "--json"])[str(clip)]
    ref = Classifier(model, info).predict_timeline(clip, hop=0.25)
    assert tl["frames"] == len(ref.starts)
    assert [t["label"] for t in tl["top"]] == [name for name, _ in ref.top_labels(5)]


def test_the_ast_audioset_catalog_name_comes_from_the_hub_then_offline(hub, tmp_path, clip, capsys):
    names = {i: f"class {i}" for i in range(527)}
    tiny_ast_dir(tmp_path / "ast", id2label=names)
    hub.commit("MIT/ast-finetuned-audioset-10-10-0.4593", {"": tmp_path / "ast"})
    online = predicted(capsys, ["predict", "ast-audioset", str(clip), "--top-k", "3", "--json"])[str(clip)]
    local = Classifier.from_pretrained(tmp_path / "ast")
    assert local.multi_label  # 527 AudioSet classes: sigmoid scores
    assert online == [p.to_dict() for p in local.predict(clip, top_k=3)]
    n = len(hub.requests)
    assert predicted(capsys, ["predict", "ast-audioset", str(clip), "--top-k", "3", "--json", "--offline"])[str(clip)] == online
    assert len(hub.requests) == n


def test_a_fresh_process_with_hf_endpoint_set_predicts_from_the_hub_without_training_code(hub, tmp_path, clip):
    """The variables as a user sets them (HF_ENDPOINT, HF_HOME: the fixture's environment), read
    by huggingface_hub at import; an audioclf-format model needs neither Lightning nor transformers."""
    import os
    import subprocess
    import sys

    model, info = lite(0)
    hub.commit("me/lite", {"": save_pretrained(model, info, tmp_path / "m")})
    assert os.environ["HF_ENDPOINT"] == hub.endpoint
    code = (
        "import json, sys\nfrom audioclf.cli import main\n"
        f"assert main(['predict', 'hf:me/lite', {str(clip)!r}, '--top-k', '3', '--json']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'torchmetrics', 'transformers')"
        " or m.startswith('audioclf.training')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip().splitlines()
    assert out[-1] == "[]"
    assert json.loads("\n".join(out[:-1]))[str(clip)] == expected(model, info, clip)
    assert hub.count("GET", r"^/api/models/me/lite/revision/main$") == 1
