"""The Hugging Face Hub both ways, against the local stand-in (tests/hub_server.py):
audioclf's Hub format written and read back bit for bit, ``hf:`` ids with revisions,
single files, offline mode, pushing, and transformers AST directories."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
import yaml

from audioclf.models import create_model, list_models
from audioclf.models.hub import (
    HubError,
    HubSource,
    hub_download,
    is_hub_dir,
    load_model_dir,
    parse_hub_source,
    push_to_hub,
    save_bundle_pretrained,
    save_pretrained,
)
from tests.golden import rule_value

# transformers' own Kaldi mel bank warns that the lowest 128-bin filter is empty (so is Kaldi's)
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter")

LABELS = ["bird", "cat", "dog"]
SETTINGS = {"channels": [4, 8]}


def lite(seed: int):
    """A small cnn_lite with seeded weights and batch-norm statistics, and its bundle info."""
    torch.manual_seed(seed)
    model = create_model("cnn_lite", len(LABELS), **SETTINGS)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    info = {
        "bundle_version": 1,
        "model": "cnn_lite",
        "model_settings": SETTINGS,
        "num_classes": len(LABELS),
        "label_names": LABELS,
        "task": "single_label",
        "sample_rate": int(model.sample_rate),
        "clip_samples": int(model.clip_samples),
        "weights": "model",
        "config": {"name": "esc-lite", "data": {"store": "/data/esc50.h5"}, "model": {"name": "cnn_lite"}},
    }
    return model.eval(), info


def logits(model, wave):
    with torch.no_grad():
        return model.eval()(wave)


@pytest.fixture(scope="module")
def wave():
    g = torch.Generator().manual_seed(1)
    return 0.1 * torch.randn(2, 16000, generator=g)


# -- parsing --------------------------------------------------------------------------------


def test_hub_ids_parse_into_repo_file_and_revision():
    assert parse_hub_source("hf:org/repo") == HubSource("org/repo")
    assert parse_hub_source("hf:org/repo@v1.0") == HubSource("org/repo", None, "v1.0")
    assert parse_hub_source("hf:org/repo/Cnn14_mAP=0.431.pth") == HubSource("org/repo", "Cnn14_mAP=0.431.pth")
    assert parse_hub_source("hf:org/repo/weights/m.pt@refs/pr/1") == HubSource("org/repo", "weights/m.pt", "refs/pr/1")
    assert str(HubSource("org/repo", "a/b.pt", "main")) == "hf:org/repo/a/b.pt@main"
    for bad in ("hf:repo", "hf:org/", "hf:/repo", "hf:org/repo@", "hf:org/repo/../x", "org/repo"):
        with pytest.raises(HubError, match=repr(bad).replace("[", r"\[")):
            parse_hub_source(bad)


# -- audioclf's Hub format, locally ------------------------------------------------------------


def test_save_pretrained_writes_safetensors_config_and_card_and_loads_back_bit_identical(tmp_path, wave):
    model, info = lite(0)
    metrics = {"checkpoint": "runs/x/checkpoints/best.ckpt", "split": "test", "accuracy": 0.8125, "macro_f1": 0.75, "clips": 16}
    out = save_pretrained(model, info, tmp_path / "m", metrics=metrics, card={"repo_id": "me/esc-lite", "license": "cc-by-4.0", "datasets": ["ashraq/esc50"]})
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert is_hub_dir(out)

    # safetensors, not pickle: an 8-byte little-endian header length, then a JSON header
    raw = (out / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    assert set(header) - {"__metadata__"} == set(model.state_dict())

    config = json.loads((out / "config.json").read_text())
    assert config["library_name"] == "audioclf"
    assert config["architecture"] == "cnn_lite" and config["model_settings"] == SETTINGS
    assert config["label_names"] == LABELS and config["num_classes"] == 3 and config["task"] == "single_label"
    assert config["sample_rate"] == model.sample_rate and config["clip_samples"] == model.clip_samples
    assert config["audioclf_version"]

    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front == {
        "library_name": "audioclf", "pipeline_tag": "audio-classification", "license": "cc-by-4.0",
        "tags": ["audioclf", "audio-classification", "pytorch", "cnn_lite"], "datasets": ["ashraq/esc50"],
    }  # fmt: skip
    assert "| accuracy | 0.8125 |" in card and "| clips | 16 |" in card and "checkpoint" not in card.split("## Metrics")[1].split("##")[0]
    assert "dataset: esc50" in card and "esc-lite" in card
    assert 'Classifier.from_pretrained("hf:me/esc-lite")' in card

    loaded, loaded_info = load_model_dir(out)
    assert (logits(loaded, wave) - logits(model, wave)).abs().max().item() == 0.0
    for key in ("model", "model_settings", "num_classes", "label_names", "task", "sample_rate", "clip_samples", "config"):
        assert loaded_info[key] == info[key], key
    other, _ = lite(1)  # loading is what made them equal
    assert not torch.equal(logits(other, wave), logits(model, wave))


def test_a_checkpoint_bundle_converts_with_its_ema_weights(tmp_path, wave):
    model, info = lite(0)
    ema, _ = lite(2)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"ema_model.module.{k}": v for k, v in ema.state_dict().items()})
    ckpt = tmp_path / "best.ckpt"
    # the layout of bundle version 1 (the EMA copy beside the model), which still converts
    torch.save({"audioclf": {**info, "weights": "ema", "bundle_version": 1}, "state_dict": state}, ckpt)
    out = save_bundle_pretrained(ckpt, tmp_path / "m")
    loaded, loaded_info = load_model_dir(out)
    assert loaded_info["weights"] == "ema"
    assert torch.equal(logits(loaded, wave), logits(ema, wave))  # the weights that were evaluated


def test_unreadable_or_mismatched_directories_are_clear_errors(tmp_path):
    model, info = lite(0)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_model_dir(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HubError, match="no config.json"):
        load_model_dir(tmp_path / "empty")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(HubError, match="'bert'"):
        load_model_dir(other)
    out = save_pretrained(model, info, tmp_path / "m")
    with pytest.raises(HubError, match="holds a 'cnn_lite' model, not 'cnn14'"):
        load_model_dir(out, model="cnn14")
    config = json.loads((out / "config.json").read_text())
    config["model_settings"] = {"channels": [4, 16]}  # weights no longer fit
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(HubError, match="model.safetensors: does not fit 'cnn_lite'"):
        load_model_dir(out)


def test_classifier_save_pretrained_round_trip(tmp_path):
    from audioclf.inference import Classifier

    model, info = lite(0)
    clf = Classifier(model, info)
    out = clf.save_pretrained(tmp_path / "clf")
    again = Classifier(*load_model_dir(out))
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 24000).astype(np.float32)
    assert np.array_equal(again.scores(audio, sample_rate=model.sample_rate), clf.scores(audio, sample_rate=model.sample_rate))
    assert [p.label for p in again.predict(audio, sample_rate=model.sample_rate, top_k=3)] == [
        p.label for p in clf.predict(audio, sample_rate=model.sample_rate, top_k=3)
    ]


# -- from the Hub ------------------------------------------------------------------------------


def test_download_a_snapshot_and_a_single_file(hub, tmp_path):
    model, info = lite(0)
    d = save_pretrained(model, info, tmp_path / "m")
    sha = hub.commit("org/lite", {"": d, "extra/notes.txt": "hello", "tf_model.h5": b"tf", "onnx/model.onnx": b"x"})
    snap = hub_download("hf:org/lite")
    assert snap.name == sha  # the cache's snapshot directory of the resolved commit
    assert not (snap / "tf_model.h5").exists() and not (snap / "onnx").exists()  # other frameworks' weights stay
    assert hub.count("GET", "tf_model.h5|model.onnx") == 0
    assert hub_download("hf:org/lite", offline=True) == snap  # and the cached snapshot counts as complete
    assert (snap / "model.safetensors").read_bytes() == (d / "model.safetensors").read_bytes()
    assert (snap / "extra" / "notes.txt").read_text() == "hello"
    one = hub_download("hf:org/lite/extra/notes.txt")
    assert one.read_text() == "hello" and one.parent.parent.name == sha
    # cached: a branch costs one look-up of its commit, a commit id nothing
    n = len(hub.requests)
    assert hub_download("hf:org/lite") == snap
    assert hub.requests[n:] == [("GET", "/api/models/org/lite/revision/main")]
    n = len(hub.requests)
    assert hub_download(f"hf:org/lite@{sha}") == snap
    assert hub_download(f"hf:org/lite/extra/notes.txt@{sha}") == one
    assert hub.requests[n:] == []


def test_revision_pinning_picks_the_weights_of_that_revision(hub, tmp_path, wave):
    first, info = lite(0)
    second, _ = lite(1)
    sha1 = hub.commit("org/lite", {"": save_pretrained(first, info, tmp_path / "1")})
    hub.tag("org/lite", "v1")
    sha2 = hub.commit("org/lite", {"": save_pretrained(second, info, tmp_path / "2")})
    assert sha1 != sha2
    want1, want2 = logits(first, wave), logits(second, wave)
    assert not torch.equal(want1, want2)
    for source, want in (("hf:org/lite", want2), ("hf:org/lite@main", want2), ("hf:org/lite@v1", want1),
                         (f"hf:org/lite@{sha1}", want1), (f"hf:org/lite@{sha2}", want2)):  # fmt: skip
        model, _ = load_model_dir(hub_download(source))
        assert torch.equal(logits(model, wave), want), source
    # a single file follows the revision too
    f1 = hub_download("hf:org/lite/model.safetensors@v1")
    assert f1.read_bytes() == (tmp_path / "1" / "model.safetensors").read_bytes()
    with pytest.raises(HubError, match="has no revision 'v9'"):
        hub_download("hf:org/lite@v9")


def test_offline_uses_the_cache_and_names_what_is_missing(hub, tmp_path, monkeypatch):
    model, info = lite(0)
    hub.commit("org/lite", {"": save_pretrained(model, info, tmp_path / "m")})
    online = hub_download("hf:org/lite")
    single = hub_download("hf:org/lite/config.json")
    before = len(hub.requests)
    assert hub_download("hf:org/lite", offline=True) == online
    assert hub_download("hf:org/lite/config.json", offline=True) == single
    assert len(hub.requests) == before  # nothing asked of the Hub
    with pytest.raises(FileNotFoundError, match=r"hf:org/other.*'org/other' at revision 'main'.*offline mode"):
        hub_download("hf:org/other", offline=True)
    with pytest.raises(FileNotFoundError, match=r"file 'README.txt' of Hub repository 'org/lite' at revision 'v2'"):
        hub_download("hf:org/lite/README.txt@v2", offline=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_download("hf:org/lite") == online
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        hub_download("hf:org/other")
    assert len(hub.requests) == before


def test_unknown_repository_revision_and_file_are_clear_errors(hub, tmp_path):
    hub.commit("org/lite", {"config.json": "{}"})
    with pytest.raises(HubError, match="no Hub repository 'org/nothing'"):
        hub_download("hf:org/nothing")
    with pytest.raises(HubError, match="has no file 'weights.pt' at revision 'main'"):
        hub_download("hf:org/lite/weights.pt")
    with pytest.raises(HubError, match="has no revision 'nope'"):
        hub_download("hf:org/lite/config.json@nope")


def test_push_then_download_then_load_is_bit_identical(hub, tmp_path, wave):
    model, info = lite(0)
    d = save_pretrained(model, info, tmp_path / "m", card={"repo_id": "me/lite"})
    url = push_to_hub(d, "me/lite", private=True)
    repo = hub.repos[("model", "me/lite")]
    assert repo.private and url.endswith(repo.refs["main"])
    pushed = hub.files("me/lite")
    for name in ("model.safetensors", "config.json", "README.md"):
        assert pushed[name] == (d / name).read_bytes(), name
    loaded, loaded_info = load_model_dir(hub_download("hf:me/lite"))
    assert (logits(loaded, wave) - logits(model, wave)).abs().max().item() == 0.0
    assert loaded_info["label_names"] == LABELS

    # a second model pushed to a branch leaves main as it was
    other, _ = lite(1)
    push_to_hub(save_pretrained(other, info, tmp_path / "o"), "me/lite", revision="v2")
    assert hub.files("me/lite")["model.safetensors"] == pushed["model.safetensors"]
    on_branch, _ = load_model_dir(hub_download("hf:me/lite@v2"))
    assert torch.equal(logits(on_branch, wave), logits(other, wave))


def test_push_a_checkpoint_bundle_and_refuse_other_directories(hub, tmp_path, wave):
    model, info = lite(0)
    ckpt = tmp_path / "best.ckpt"
    torch.save({"audioclf": info, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    push_to_hub(ckpt, "me/from-ckpt")
    card = hub.files("me/from-ckpt")["README.md"].decode()
    assert 'from_pretrained("hf:me/from-ckpt")' in card
    loaded, _ = load_model_dir(hub_download("hf:me/from-ckpt"))
    assert torch.equal(logits(loaded, wave), logits(model, wave))
    (tmp_path / "random").mkdir()
    with pytest.raises(HubError, match="not audioclf's Hub format"):
        push_to_hub(tmp_path / "random", "me/x")
    with pytest.raises(HubError, match="not a Hub repository id"):
        push_to_hub(ckpt, "no-org")
    assert ("model", "me/x") not in hub.repos


# -- transformers directories ------------------------------------------------------------------

AST_LABELS = {0: "Speech", 1: "Music", 2: "Dog", 3: "Siren"}


def tiny_ast_dir(path, id2label=AST_LABELS, **config):
    """A transformers ASTForAudioClassification directory (tiny config; weights by the golden
    rule), saved with transformers' own save_pretrained, with its feature extractor."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    cfg = ASTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_length=128,
        id2label=id2label, label2id={v: k for k, v in id2label.items()}, **config,
    )  # fmt: skip
    model = ASTForAudioClassification(cfg).eval()
    with torch.no_grad():
        for name, p in model.state_dict().items():
            p.copy_(rule_value(name, list(p.shape)))
    model.save_pretrained(path)
    ASTFeatureExtractor(max_length=128).save_pretrained(path)
    return model


def transformers_logits(model, wave):
    """What transformers itself computes for ``wave`` (its feature extractor, its model)."""
    from transformers import ASTFeatureExtractor

    fe = ASTFeatureExtractor(max_length=128)
    feats = fe([w.numpy() for w in wave], sampling_rate=16000, return_tensors="pt")["input_values"]
    with torch.no_grad():
        return model(input_values=feats).logits


def test_transformers_ast_directory_loads_with_id2label_names(tmp_path, wave):
    # id2label written out of index order: names must follow the indices, not the file
    shuffled = {2: "Dog", 0: "Speech", 3: "Siren", 1: "Music"}
    ref = tiny_ast_dir(tmp_path / "ast", id2label=shuffled)
    model, info = load_model_dir(tmp_path / "ast")
    assert info["label_names"] == ["Speech", "Music", "Dog", "Siren"]
    assert info["model"] == "ast" and info["sample_rate"] == 16000 and info["clip_samples"] == 128 * 160
    assert info["task"] == "single_label"
    want = transformers_logits(ref, wave)
    got = logits(model, wave)
    # measured: 6e-7 (logits up to 2); the frontends differ by float32 vs float64 DFT only
    assert (got - want).abs().max().item() < 1e-4
    assert not torch.allclose(logits(create_model("ast", 4, **info["model_settings"]), wave), want, atol=1e-2)


def test_transformers_multi_label_and_from_the_hub(hub, tmp_path, wave):
    ref = tiny_ast_dir(tmp_path / "ast", problem_type="multi_label_classification")
    hub.commit("MIT/tiny-ast", {"": tmp_path / "ast"})
    model, info = load_model_dir(hub_download("hf:MIT/tiny-ast"))
    assert info["task"] == "multi_label" and info["label_names"] == list(AST_LABELS.values())
    assert (logits(model, wave) - transformers_logits(ref, wave)).abs().max().item() < 1e-4
    config = json.loads((tmp_path / "ast" / "config.json").read_text())
    config["id2label"] = {"0": "a", "2": "c"}
    (tmp_path / "ast" / "config.json").write_text(json.dumps(config))
    with pytest.raises(HubError, match="id2label must name every class index"):
        load_model_dir(tmp_path / "ast")


# -- every registered model survives the Hub format ----------------------------------------------


def _small(name: str) -> dict:
    """Small sizes for the 90 M-parameter transformers (the same modules, fewer and narrower)."""
    from tests.models.test_ast import SMALL as SMALL_AST
    from tests.models.test_beats import SMALL as SMALL_BEATS

    return {"ast": SMALL_AST, "ast_speech_commands": SMALL_AST, "beats_iter3_plus": SMALL_BEATS}.get(name, {})


@pytest.mark.parametrize("name", list_models())
def test_every_model_round_trips_through_the_hub_format_bit_identically(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, 5, **_small(name)).eval()
    info = {
        "model": name, "model_settings": _small(name), "num_classes": 5, "label_names": list("abcde"),
        "task": "multi_label", "sample_rate": int(model.sample_rate), "clip_samples": int(model.clip_samples),
    }  # fmt: skip
    loaded, _ = load_model_dir(save_pretrained(model, info, tmp_path / name))
    assert sorted(loaded.state_dict()) == sorted(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # one clip of the model's own length (what every model takes); 0.5 s where it is long
    n = int(model.clip_samples) if name.startswith(("eat", "simple_cnn", "piczak")) else int(0.5 * model.sample_rate)
    x = 0.1 * torch.randn(1, n, generator=torch.Generator().manual_seed(0))
    assert (logits(loaded, x) - logits(model, x)).abs().max().item() == 0.0


def test_an_unreachable_hub_falls_back_to_the_cache_and_says_so(hub, tmp_path, monkeypatch):
    import socket

    from huggingface_hub import constants

    model, info = lite(0)
    hub.commit("org/lite", {"": save_pretrained(model, info, tmp_path / "m")})
    cached = hub_download("hf:org/lite")
    with socket.socket() as s:  # a port nothing listens on: the network goes away
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", dead)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", dead + "/{repo_id}/resolve/{revision}/{filename}")
    assert hub_download("hf:org/lite") == cached
    with pytest.raises(FileNotFoundError, match=r"hf:org/other: Hub repository 'org/other'.*the Hub could not be reached"):
        hub_download("hf:org/other")


def test_a_transformers_model_saved_in_audioclf_format_keeps_its_outputs_and_names(tmp_path, wave):
    tiny_ast_dir(tmp_path / "ast", problem_type="multi_label_classification")
    model, info = load_model_dir(tmp_path / "ast")
    again, again_info = load_model_dir(save_pretrained(model, info, tmp_path / "audioclf"))
    assert torch.equal(logits(again, wave), logits(model, wave))
    assert again_info["label_names"] == info["label_names"] and again_info["task"] == "multi_label"
    assert "recipe: not recorded" in (tmp_path / "audioclf" / "README.md").read_text()
