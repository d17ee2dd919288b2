"""``audioclf embed`` and ``Classifier.embed``: one embedding per file or store clip, in .npy
(+ .csv), .npz and .parquet, and the docs' linear-probe example run as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from audioclf.cli import main
from audioclf.inference import Classifier
from audioclf.inference.embed import read_embeddings
from audioclf.models import create_model
from tests.golden import load_golden, rule_state_dict

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cnn6_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("embed") / "Cnn6_mAP=0.343.pth"
    torch.save({"model": rule_state_dict(load_golden("panns_cnn6"))}, path)
    return path


def _wav(path: Path, seconds: float, rate: int = 32000, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32), rate)
    return path


def test_classifier_embed_is_the_model_embedding_of_the_padded_clip(cnn6_file, tmp_path):
    clip = _wav(tmp_path / "a.wav", 3.0)
    clf = Classifier.from_pretrained(cnn6_file)
    wave, _ = sf.read(clip, dtype="float32")
    padded = np.zeros(320000, np.float32)
    padded[: wave.size] = wave
    model = create_model("cnn6", 527, pretrained=cnn6_file).eval()
    with torch.no_grad():
        expected = model.embed(torch.from_numpy(padded)[None])[0].numpy()  # fc1 + ReLU, 512-d for CNN6
    got = clf.embed(str(clip))
    assert got.shape == (512,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_embed_files_in_every_format(cnn6_file, tmp_path, capsys):
    files = [_wav(tmp_path / "a.wav", 3.0, seed=1), _wav(tmp_path / "b.wav", 14.0, seed=2)]  # b: 2 windows
    for suffix in (".npy", ".npz", ".parquet"):
        out = tmp_path / f"emb{suffix}"
        assert main(["embed", str(cnn6_file), *map(str, files), "--out", str(out), "--batch-size", "2"]) == 0
    npy = read_embeddings(tmp_path / "emb.npy")
    assert npy.embeddings.shape == (2, 512) and npy.names == [str(f) for f in files] and npy.labels == ["", ""]
    assert (tmp_path / "emb.csv").read_text().splitlines()[0] == "index,name,label"
    for other in ("emb.npz", "emb.parquet"):
        e = read_embeddings(tmp_path / other)
        assert e.names == npy.names
        np.testing.assert_array_equal(e.embeddings, npy.embeddings)
    table = pq.read_table(tmp_path / "emb.parquet")
    assert table.column_names == ["name", "label", "embedding"] and table.num_rows == 2
    # the two-window file is the mean of its windows, as Classifier.embed computes it
    clf = Classifier.from_pretrained(cnn6_file)
    np.testing.assert_allclose(npy.embeddings[1], clf.embed(str(files[1])), rtol=0, atol=1e-5)


def test_embed_rejects_an_unknown_output_format(cnn6_file, tmp_path, capsys):
    assert main(["embed", str(cnn6_file), "x.wav", "--out", str(tmp_path / "emb.txt")]) == 2
    assert ".parquet" in capsys.readouterr().err


def _probe_example() -> tuple[list[str], str]:
    """The shell commands and the Python block of docs/pretrained.md's linear-probe example."""
    text = (ROOT / "docs" / "pretrained.md").read_text()
    section = text.split("<!-- linear-probe example -->", 2)[1]
    commands = re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)[0]
    code = re.findall(r"```python\n(.+?)\n```", section, flags=re.S)[0]
    return [c for c in commands.splitlines() if c.strip()], code


def test_docs_linear_probe_example_runs(lite_checkpoint, tmp_path, monkeypatch, capsys):
    """The example as written, with the tiny session checkpoint for panns-cnn14 and its store."""
    from audioclf.data.catalog import create_source
    from audioclf.data.prepare import prepare_dataset

    store = tmp_path / "speech_commands.h5"
    prepare_dataset(create_source("synthetic", clips_per_class=6, seconds=1.0), store)
    monkeypatch.chdir(tmp_path)
    commands, code = _probe_example()
    for cmd in commands:
        argv = shlex.split(cmd.replace("panns-cnn14", str(lite_checkpoint)))
        assert argv[0] == "audioclf"
        assert main(argv[1:]) == 0, cmd
    capsys.readouterr()
    exec(compile(code, "docs/pretrained.md", "exec"), {})  # noqa: S102 - our own docs
    printed = capsys.readouterr().out
    accuracy = float(re.search(r"linear-probe accuracy: ([0-9.]+)", printed).group(1))
    assert 0.0 <= accuracy <= 1.0
