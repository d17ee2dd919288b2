"""Model sources: published checkpoint files in their own layouts (recognised from keys and
shapes), the published-weights catalog with its cached, checksum-verified downloads, and the
label names that travel with the weights. Each file route also runs through ``audioclf
predict``. Weights follow the golden rule (tests/data/golden/README.md)."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from audioclf.cli import main
from audioclf.errors import ConfigError
from audioclf.models import create_model, list_models
from audioclf.models import pretrained as pretrained_mod
from audioclf.models.pretrained import (
    PretrainedEntry,
    get_pretrained,
    list_pretrained,
    register_pretrained,
    resolve_model,
)
from tests.data.catalog.fakes import FakeServer
from tests.golden import load_golden, rule_state_dict, rule_value

# a small BEATs (same architecture, fewer and narrower layers) so the tests stay fast
SMALL_BEATS = {
    "embed_dim": 32, "encoder_embed_dim": 48, "encoder_layers": 2, "encoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 4, "conv_pos": 16, "conv_pos_groups": 4,
}
PANNS_FRONTEND = {
    "frontend.stft_real": "spectrogram_extractor.stft.conv_real.weight",
    "frontend.stft_imag": "spectrogram_extractor.stft.conv_imag.weight",
    "frontend.mel_fb": "logmel_extractor.melW",
}


def _rule_filled(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point entries replaced by the golden rule's values (deterministic weights)."""
    return {k: rule_value(k, list(v.shape)) if v.is_floating_point() else v for k, v in state.items()}


def _predict_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["predict", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _wav(path, seconds: float, rate: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32), rate)
    return path


# --- PANNs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn6_file(tmp_path_factory):
    golden = load_golden("panns_cnn6")
    state = rule_state_dict(golden)
    state["fc_audioset.bias"] = state["fc_audioset.bias"].clone()
    path = tmp_path_factory.mktemp("panns") / "Cnn6_mAP=0.343.pth"
    torch.save({"model": state}, path)
    return golden, path


def test_panns_file_gives_the_same_logits_as_create_model_pretrained(cnn6_file):
    golden, path = cnn6_file
    model, info = resolve_model(path)
    reference = create_model("cnn6", 527, pretrained=path).eval()
    wave = golden["waveform"]
    with torch.no_grad():
        logits = model(wave)
        torch.testing.assert_close(logits, reference(wave), rtol=0, atol=0)
    torch.testing.assert_close(logits, golden["logits"], rtol=0, atol=1e-3)
    assert info["model"] == "cnn6" and info["sample_rate"] == 32000 and info["clip_samples"] == 320000
    assert info["task"] == "multi_label" and info["num_classes"] == 527


def test_panns_outputs_carry_audioset_names_in_published_order(cnn6_file, tmp_path, capsys):
    golden, _ = cnn6_file
    state = rule_state_dict(golden)
    state["fc_audioset.weight"] = torch.zeros(527, 512)  # the scores come from the bias alone
    state["fc_audioset.bias"] = torch.zeros(527)
    state["fc_audioset.bias"][74] = 6.0  # row 74 of class_labels_indices.csv: /m/0bt9lr, "Dog"
    state["fc_audioset.bias"][137] = 3.0  # row 137: /m/04rlf, "Music"
    path = tmp_path / "Cnn6_mAP=0.343.pth"
    torch.save({"model": state}, path)
    clip = _wav(tmp_path / "clip.wav", 3.0, 32000)
    result = _predict_json(capsys, str(path), str(clip), "--top-k", "2")
    assert [p["label"] for p in result[str(clip)]] == ["Dog", "Music"]
    # naming the architecture gives the same answer
    assert _predict_json(capsys, str(path), str(clip), "--top-k", "2", "--model", "cnn6") == result


def test_panns_16k_variant_is_recognised_from_its_frontend(cnn6_file, tmp_path, capsys):
    golden, _ = cnn6_file
    state = rule_state_dict(golden)
    own = create_model("cnn6", 527, sample_rate=16000, n_fft=512, hop_length=160, fmax=8000).state_dict()
    for ours, published in PANNS_FRONTEND.items():
        state[published] = own[ours]  # a 512-point STFT and its 257-bin mel matrix
    path = tmp_path / "Cnn6_16k.pth"
    torch.save({"model": state}, path)
    model, info = resolve_model(path)
    assert info["sample_rate"] == 16000 and model.frontend.stft_real.shape == own["frontend.stft_real"].shape
    assert info["model_settings"]["hop_length"] == 160
    clip = _wav(tmp_path / "clip16.wav", 2.0, 16000)
    assert len(_predict_json(capsys, str(path), str(clip), "--top-k", "3")[str(clip)]) == 3


# --- BEATs ------------------------------------------------------------------------------------


def _small_beats_state(num_classes: int = 527) -> dict[str, torch.Tensor]:
    return _rule_filled(create_model("beats_iter3_plus", num_classes, **SMALL_BEATS).state_dict())


def _beats_cfg() -> dict:
    cfg = dict(load_golden("beats_iter3_plus")["config"])
    cfg.update(SMALL_BEATS)
    return cfg


def test_label_dict_in_non_sorted_order_names_each_output():
    from audioclf.models.labels import names_from_label_dict

    # index -> mid, deliberately not class_labels_indices.csv's order (there: 137, 0, 74)
    crafted = {0: "/m/04rlf", 1: "/m/09x0r", 2: "/m/0bt9lr"}
    assert names_from_label_dict(crafted, 3) == ["Music", "Speech", "Dog"]
    with pytest.raises(ValueError, match="covers 2 indices, the head has 3 outputs"):
        names_from_label_dict({0: "/m/04rlf", 2: "/m/09x0r"}, 3)
    with pytest.raises(ValueError, match="not AudioSet mids"):
        names_from_label_dict({0: "/m/nope"}, 1)


def test_beats_fine_tuned_outputs_are_named_through_label_dict(tmp_path, capsys):
    from audioclf.models.labels import audioset_mids

    mids = audioset_mids()
    order = list(range(527))[::-1]  # output i is AudioSet class 526 - i
    label_dict = {i: mids[j] for i, j in enumerate(order)}
    state = _small_beats_state()
    state["predictor.weight"] = torch.zeros(527, 48)
    state["predictor.bias"] = torch.zeros(527)
    state["predictor.bias"][526 - 74] = 6.0  # the output whose mid is /m/0bt9lr (Dog)
    state["predictor.bias"][0] = 3.0  # output 0: class 526, /m/07hvw1 "Field recording"
    path = tmp_path / "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
    torch.save({"cfg": _beats_cfg(), "model": state, "label_dict": label_dict}, path)
    clip = _wav(tmp_path / "clip.wav", 2.0, 16000)
    result = _predict_json(capsys, str(path), str(clip), "--top-k", "2")
    assert [p["label"] for p in result[str(clip)]] == ["Dog", "Field recording"]
    model, info = resolve_model(path)
    assert info["model"] == "beats_iter3_plus" and info["model_settings"]["encoder_layers"] == 2


def test_beats_published_file_route_matches_the_golden_logits(tmp_path):
    """The full-size iter3+ fine-tuned layout, recognised from its cfg, with its label_dict."""
    from audioclf.models.labels import audioset_mids

    golden = load_golden("beats_iter3_plus")
    path = tmp_path / "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
    label_dict = dict(enumerate(audioset_mids()))
    torch.save({"cfg": golden["config"], "model": rule_state_dict(golden), "label_dict": label_dict}, path)
    model, info = resolve_model(path)
    assert info["model"] == "beats_iter3_plus" and info["model_settings"] == {} and info["num_classes"] == 527
    with torch.no_grad():
        logits = model.head(model.forward_features(golden["fbank_normalized"]))
    torch.testing.assert_close(logits, golden["logits"], rtol=0, atol=1e-3)


def test_beats_pretrained_only_file_embeds_but_does_not_predict(tmp_path, capsys):
    state = {k: v for k, v in _small_beats_state().items() if not k.startswith("predictor.")}
    cfg = {**_beats_cfg(), "finetuned_model": False}
    cfg.pop("predictor_class")
    path = tmp_path / "BEATs_iter3_plus_AS2M.pt"
    torch.save({"cfg": cfg, "model": state}, path)
    clip = _wav(tmp_path / "clip.wav", 1.0, 16000)
    capsys.readouterr()
    assert main(["predict", str(path), str(clip)]) == 2
    assert "without a classifier head" in capsys.readouterr().err
    from audioclf.inference import Classifier

    assert Classifier.from_pretrained(path).embed(str(clip)).shape == (48,)


# --- EAT --------------------------------------------------------------------------------------


def test_eat_chkpnt_route(tmp_path, capsys):
    golden = load_golden("eat_s")
    model = create_model("eat_s", 50)
    state = rule_state_dict(golden, base=model.state_dict())
    path = tmp_path / "chkpnt.pt"
    torch.save({"model_dict": {f"module.{k}": v for k, v in state.items()}, "best_acc": 0.0}, path)
    net, info = resolve_model(path)
    assert info["model"] == "eat_s" and info["clip_samples"] == 114688 and info["sample_rate"] == 22050
    with torch.no_grad():
        torch.testing.assert_close(net(golden["waveform"][:, 0]), golden["logits"], rtol=0, atol=1e-3)
    clip = _wav(tmp_path / "clip.wav", 5.2, 22050)
    preds = _predict_json(capsys, str(path), str(clip), "--top-k", "3")[str(clip)]
    assert len(preds) == 3 and all(p["label"].startswith("class_") for p in preds)
    assert abs(sum(p["score"] for p in _predict_json(capsys, str(path), str(clip), "--top-k", "50")[str(clip)]) - 1) < 1e-4


# --- ESPnet -----------------------------------------------------------------------------------


def _espnet_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """audioclf/BEATs names -> the state dict of ESPnet's classification model
    (``encoder.`` = its BeatsEncoder, ``decoder.linear_out`` = its LinearDecoder)."""
    out = {}
    for k, v in state.items():
        if k.startswith("predictor."):
            out["decoder.linear_out." + k[len("predictor."):]] = v
        else:
            out["encoder." + k] = v
    # ESPnet's BEATs encoder keeps two frozen helper convolutions for padding masks
    out["encoder.patch_embedding_pad.weight"] = torch.ones(1, 1, 16, 16)
    out["encoder.raw2fbank_pad.weight"] = torch.ones(1, 1, 400)
    return out


def _espnet_repo(root):
    """An ESPnet classification run as its Hub repo holds it: exp/<run>/{valid.mAP.best.pth,
    config.yaml}; 3 classes, output 1 ("Dog") dominant. Returns (checkpoint, BEATs state)."""
    from audioclf.models.labels import audioset_names

    names = audioset_names()
    state = _small_beats_state(3)
    state["predictor.weight"] = 0.01 * state["predictor.weight"]
    state["predictor.bias"] = torch.tensor([0.0, 40.0, 0.0])
    run = root / "exp" / "cls_beats_as20k"
    run.mkdir(parents=True)
    ckpt = run / "valid.mAP.best.pth"
    torch.save(_espnet_layout(state), ckpt)
    # ESPnet's AS-20K recipe writes tokens as display names with underscores
    tokens = [names[137], names[74], names[0]]
    (run / "config.yaml").write_text(
        "encoder: beats\n"
        "decoder_conf:\n  pooling: mean\n"
        "model_conf:\n  classification_type: multi-label\n"
        "token_list:\n" + "".join(f"- {t.replace(' ', '_')}\n" for t in tokens) + "- <blank>\n"
    )
    return ckpt, state


def test_espnet_checkpoint_maps_onto_beats(tmp_path, capsys):
    ckpt, state = _espnet_repo(tmp_path)
    net, info = resolve_model(ckpt)
    assert info["label_names"] == ["Music", "Dog", "Speech"] and info["task"] == "multi_label"
    # the same weights through the BEATs route give the same logits
    bfile = tmp_path / "beats.pt"
    torch.save({"cfg": {**_beats_cfg(), "predictor_class": 3}, "model": state}, bfile)
    ref, _ = resolve_model(bfile)
    wave = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(net(wave), ref(wave), rtol=0, atol=0)
    clip = _wav(tmp_path / "clip.wav", 1.0, 16000)
    assert _predict_json(capsys, str(ckpt), str(clip), "--top-k", "1")[str(clip)][0]["label"] == "Dog"
    # the snapshot directory of the Hub repo resolves to that checkpoint as well
    assert resolve_model(tmp_path)[1]["label_names"] == ["Music", "Dog", "Speech"]


def test_espnet_modules_audioclf_lacks_are_named(tmp_path):
    state = _espnet_layout(_small_beats_state(3))
    state["encoder.layer_weights"] = torch.ones(3, 1)
    path = tmp_path / "weighted.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="encoder.layer_weights"):
        resolve_model(path)


# --- unrecognised files and --model -----------------------------------------------------------


def test_unrecognised_file_names_the_file_and_the_candidates(tmp_path, capsys):
    path = tmp_path / "mystery.pt"
    torch.save({"weights": {"a.weight": torch.zeros(2, 2)}}, path)
    capsys.readouterr()
    assert main(["predict", str(path), "x.wav"]) == 2
    err = "".join(capsys.readouterr().err.split())
    assert "mystery.pt" in err and "--modelNAME" in err and "panns" in err and "cnn14" in err


def test_model_names_the_architecture_of_a_bare_state_dict(tmp_path):
    source = create_model("cnn_lite", 4)
    state = _rule_filled(source.state_dict())
    path = tmp_path / "bare.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match="--model NAME"):
        resolve_model(path)
    model, info = resolve_model(path, model="cnn_lite")
    assert info["num_classes"] == 4 and info["label_names"] == ["class_0", "class_1", "class_2", "class_3"]
    torch.testing.assert_close(model.state_dict()["head.weight"], state["head.weight"])


def test_model_of_another_family_than_the_file_is_an_error(cnn6_file):
    with pytest.raises(ValueError, match="PANNs|panns"):
        resolve_model(cnn6_file[1], model="eat_s")


def test_missing_source_lists_catalog_names(capsys):
    capsys.readouterr()
    assert main(["predict", "no-such-model", "x.wav"]) == 2
    err = "".join(capsys.readouterr().err.split())
    assert "no-such-model" in err and "panns-cnn14" in err and "hf:ORG/REPO" in err


# --- the catalog ------------------------------------------------------------------------------


def test_catalog_entries_have_licence_metric_and_sources():
    names = list_pretrained()
    for name in ("panns-cnn14", "beats-iter3plus-as2m-ft", "ast-audioset", "espnet-beats-as20k"):
        assert name in names
    for name in names:
        e = get_pretrained(name)
        assert e.licence and e.metric and e.paper and e.source
        assert e.hub or (e.filename and e.source.startswith("https://"))
        assert e.architecture in list_models()  # a registered model
    e = get_pretrained("panns-cnn14")
    assert e.filename == "Cnn14_mAP=0.431.pth" and "3987831" in e.source
    assert e.checksum == "md5:541141fa2ee191a88f24a3219fff024e"  # as published with the Zenodo record
    assert get_pretrained("ast-audioset").source == "hf:MIT/ast-finetuned-audioset-10-10-0.4593"
    assert get_pretrained("espnet-beats-as20k").source == "hf:espnet/BEATs-AS20K"


def test_the_catalog_refuses_a_second_entry_of_a_name_and_names_the_closest(monkeypatch):
    entry = get_pretrained("panns-cnn14")
    assert register_pretrained(entry) is entry  # the same entry again: a module imported twice
    monkeypatch.setattr(pretrained_mod, "_CATALOG", pretrained_mod._CATALOG.copy())  # nothing may leak
    with pytest.raises(ValueError, match="pretrained model 'panns-cnn14' is registered twice"):
        register_pretrained(PretrainedEntry(**{**entry.__dict__, "metric": "another"}))
    assert get_pretrained("panns-cnn14") is entry
    with pytest.raises(ConfigError, match="unknown pretrained model 'panns-cnn41'; did you mean 'panns-cnn14'.*espnet-beats"):
        get_pretrained("panns-cnn41")


def test_models_pretrained_lists_the_catalog(capsys):
    capsys.readouterr()
    assert main(["models", "--pretrained", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert by_name["panns-cnn14"]["licence"].startswith("MIT")
    assert by_name["panns-cnn14"]["published metric"] == "AudioSet mAP 0.431"
    assert by_name["panns-cnn14"]["checksum"] == "md5:541141fa2ee191a88f24a3219fff024e"
    assert set(by_name) == set(list_pretrained())


def _add_to_catalog(monkeypatch: pytest.MonkeyPatch, entry: PretrainedEntry) -> None:
    """``entry`` in the catalog for this test only."""
    catalog = pretrained_mod._CATALOG.copy()
    catalog.add(entry.name, entry)
    monkeypatch.setattr(pretrained_mod, "_CATALOG", catalog)


@pytest.fixture
def served_entry(tmp_path, monkeypatch, cnn6_file):
    """A catalog entry whose file (a published-layout CNN6) is served on 127.0.0.1."""
    server = FakeServer(tmp_path / "served")
    data = cnn6_file[1].read_bytes()
    url = server.put("Cnn6_mAP=0.343.pth", data)
    entry = PretrainedEntry(
        "test-cnn6", "cnn6", url, filename="Cnn6_mAP=0.343.pth", checksum="md5:" + hashlib.md5(data).hexdigest(),
        licence="MIT", labels="audioset", metric="mAP 0.343", paper="test",
    )
    _add_to_catalog(monkeypatch, entry)
    monkeypatch.setenv("AUDIOCLF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    try:
        yield server, entry, tmp_path / "cache" / "pretrained" / entry.filename
    finally:
        server.close()


def test_catalog_download_is_verified_then_cached_for_offline_use(served_entry, tmp_path, capsys):
    server, entry, cached = served_entry
    clip = _wav(tmp_path / "clip.wav", 2.0, 32000)
    first = _predict_json(capsys, entry.name, str(clip), "--top-k", "3")
    assert cached.is_file() and any(r["path"] == entry.filename for r in server.requests)
    n = len(server.requests)
    second = _predict_json(capsys, entry.name, str(clip), "--top-k", "3", "--offline")
    assert second == first and len(server.requests) == n  # the cache only
    # a cached file that changed after it was verified is checked again, and refused
    with cached.open("ab") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match="md5"):
        resolve_model(entry.name, offline=True)


def test_offline_with_an_empty_cache_names_what_is_missing(served_entry, tmp_path, capsys, monkeypatch):
    server, entry, cached = served_entry
    capsys.readouterr()
    assert main(["predict", entry.name, "x.wav", "--offline"]) == 2
    err = "".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "offline" in err and str(cached) in err and not server.requests
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub's switch means the same here
    with pytest.raises(FileNotFoundError, match="not in the cache"):
        resolve_model(entry.name)


def test_catalog_download_with_a_wrong_checksum_is_refused(served_entry, monkeypatch):
    server, entry, cached = served_entry
    # the same file under another name, with a checksum it does not have
    bad = PretrainedEntry(**{**entry.__dict__, "name": "test-cnn6-bad", "checksum": "md5:" + "0" * 32})
    _add_to_catalog(monkeypatch, bad)
    with pytest.raises(ValueError, match="md5"):
        resolve_model(bad.name)
    assert not cached.exists()


def test_model_pretrained_accepts_a_catalog_name(served_entry, caplog):
    from audioclf.training.trainer import load_initial_weights

    _, entry, _ = served_entry
    model = create_model("cnn6", 10)
    with caplog.at_level(logging.INFO):
        load_initial_weights(model, entry.name, name="cnn6")
    reference = create_model("cnn6", 10, pretrained=pretrained_mod.fetch_pretrained(entry.name))
    for k, v in reference.state_dict().items():
        if not k.startswith("fc_audioset."):  # the 10-class head stays freshly initialised
            torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIOCLF_CACHE", str(tmp_path / "a"))
    assert pretrained_mod.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("AUDIOCLF_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pretrained_mod.cache_dir() == tmp_path / "xdg" / "audioclf"


def test_predict_with_a_published_file_imports_no_training_code(cnn6_file, tmp_path):
    import subprocess
    import sys

    clip = _wav(tmp_path / "clip.wav", 1.0, 32000)
    code = (
        "import sys\nfrom audioclf.cli import main\n"
        f"assert main(['predict', {str(cnn6_file[1])!r}, {str(clip)!r}, '--top-k', '1']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'torchmetrics', 'transformers')"
        " or m.startswith('audioclf.training')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


# --- Hub-hosted sources (the local stand-in of tests/hub_server.py) ----------------------------


def test_hub_hosted_catalog_entry_resolves_its_snapshot(hub, tmp_path, monkeypatch, capsys):
    _espnet_repo(tmp_path / "repo")
    hub.commit("espnet/BEATs-AS20K-test", {"": tmp_path / "repo"})
    entry = PretrainedEntry("test-espnet", "beats_iter3_plus", "hf:espnet/BEATs-AS20K-test", licence="test",
                            labels="token_list", metric="-", paper="-")
    _add_to_catalog(monkeypatch, entry)
    clip = _wav(tmp_path / "clip.wav", 1.0, 16000)
    first = _predict_json(capsys, entry.name, str(clip), "--top-k", "3")
    assert [p["label"] for p in first[str(clip)]][0] == "Dog"
    assert {p["label"] for p in first[str(clip)]} == {"Music", "Dog", "Speech"}
    hub.close()  # nothing is reachable now: the Hub cache must do
    assert _predict_json(capsys, entry.name, str(clip), "--top-k", "3", "--offline") == first


def test_hf_file_route_reads_a_published_file_from_a_repo(hub, cnn6_file, tmp_path, capsys):
    hub.commit("someone/panns", {"Cnn6_mAP=0.343.pth": cnn6_file[1]})
    clip = _wav(tmp_path / "clip.wav", 1.0, 32000)
    preds = _predict_json(capsys, "hf:someone/panns/Cnn6_mAP=0.343.pth", str(clip), "--top-k", "3")[str(clip)]
    from audioclf.models.labels import audioset_names

    assert len(preds) == 3 and all(p["label"] in audioset_names() for p in preds)
    model, info = resolve_model("hf:someone/panns/Cnn6_mAP=0.343.pth")
    assert info["model"] == "cnn6" and info["source"].endswith("Cnn6_mAP=0.343.pth")
