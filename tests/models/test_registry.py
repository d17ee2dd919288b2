"""The model contract, checked over every registered model."""

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from audioclf.errors import ConfigError
from audioclf.models import create_model, get_model_info, list_models, register_model
from audioclf.models.checkpoints import load_state_into

# Settings that keep the two 90 M-parameter transformers quick to run in this test; they
# change only sequence length, never the architecture.
FAST = {"ast": {"max_length": 128}}

EXPECTED = {
    "cnn_lite", "cnn6", "cnn10", "cnn14", "eat_s", "eat_m", "blocknet", "piczak_cnn",
    "vgg_like", "crnn", "simple_cnn", "ast", "beats_iter3_plus",
}


def test_every_seed_architecture_is_registered() -> None:
    assert set(list_models()) >= EXPECTED
    assert list_models("cnn1") == ["cnn10", "cnn14"]


def _short_input(model: nn.Module, seconds: float = 1.0) -> torch.Tensor:
    """A short batch: 1 s where the model accepts any length, else its fixed clip."""
    n = min(int(model.clip_samples), int(seconds * model.sample_rate))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, n))
    except ValueError as err:
        # fixed-length models (EAT, simple_cnn, ...) reject other lengths with
        # require_clip_length's message, which names the one shape they take
        assert f"takes waveforms of shape (batch, {model.clip_samples})" in str(err), err
        n = int(model.clip_samples)
    return torch.randn(2, n) * 0.1


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_and_contract(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, **FAST.get(name, {}))
    info = get_model_info(name)
    assert model.num_classes == 7
    assert isinstance(model.sample_rate, int) and model.sample_rate == info.sample_rate
    assert model.clip_samples > 0
    assert model.head_prefixes and any(k.startswith(model.head_prefixes) for k in model.state_dict())
    x = _short_input(model)
    model.train()
    logits = model(x)
    assert logits.shape == (2, 7) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    logits.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads[-2:])  # the head gets gradients
    assert any(float(g.abs().sum()) > 0 for g in grads if g is not None)
    model.eval()
    with torch.no_grad():
        emb = model.embed(x)
        # embed is the documented clip embedding: what the head reads (PANNs fc1, EAT's class
        # token, BEATs/AST pooled encoder output), so `audioclf embed` sees the head's features
        head = model.get_submodule(model.head_prefixes[0].rstrip("."))
        torch.testing.assert_close(head(emb), model(x), rtol=1e-4, atol=1e-4)
        # frontend -> forward_features -> head is forward, part by part, exactly; the head
        # is the module under head_prefixes; embed is what the head reads
        assert model.head is head
        spec = model.frontend(x)
        features = model.forward_features(spec)
        assert torch.equal(model.head(features), model(x))
        assert torch.equal(features, emb)
    assert emb.ndim == 2 and emb.shape[0] == 2
    assert isinstance(model.frontend, nn.Identity) == (get_model_info(name).family == "eat")


def test_unknown_model_and_bad_settings_are_explained() -> None:
    # user errors (a config names them): ConfigError, which the CLI prints with exit 2
    with pytest.raises(ConfigError, match="unknown model 'cnn99'; did you mean '\\w+'\\? known: "):
        create_model("cnn99", 3)
    with pytest.raises(ConfigError, match="bad settings for model 'cnn_lite'.*no_such_setting"):
        create_model("cnn_lite", 3, no_such_setting=1)
    with pytest.raises(ConfigError, match="num_classes must be >= 1"):
        create_model("cnn_lite", 0)


@pytest.mark.parametrize(("name", "settings", "message"), [
    ("piczak_cnn", {"n_mels": 40}, "piczak_cnn needs n_mels >= 60, got 40"),
    ("vgg_like", {"stages": [[8, 0]]}, r"vgg_like: stages\[0\] must be \[channels, convs\] >= 1"),
    ("eat_s", {"factors": [1]}, "EAT: factors must be a non-empty list of ints >= 2"),
    ("cnn6", {"channels": [8, 16]}, "bad settings for model 'cnn6': .*'channels': the variant sets it"),
    ("cnn_lite", {"fmin": 9000.0, "sample_rate": 16000}, "fmin=9000"),
])
def test_a_setting_out_of_range_is_a_config_error_naming_it(name: str, settings: dict, message: str) -> None:
    # a user error (the CLI's exit 2 with this message), not a bare ValueError (a bug: exit 1)
    with pytest.raises(ConfigError, match=message):
        create_model(name, 3, **settings)


def test_registering_twice_is_an_error() -> None:
    def cnn_lite(num_classes: int) -> nn.Module:  # same name, other function
        return nn.Linear(1, num_classes)

    with pytest.raises(ValueError, match="registered twice"):
        register_model(cnn_lite)


def test_head_of_another_size_is_replaced_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = create_model("cnn_lite", 10, channels=(4, 8))
    torch.save({"model": source.state_dict()}, tmp_path / "src.pt")
    with caplog.at_level(logging.INFO, logger="audioclf"):
        target = create_model("cnn_lite", 3, pretrained=tmp_path / "src.pt", channels=(4, 8))
    assert "head replaced" in caplog.text
    torch.testing.assert_close(target.features[0][0].weight, source.features[0][0].weight)
    assert target.head.weight.shape == (3, 8)
    # a backbone that does not fit is an error, never a silent partial load
    other = create_model("cnn_lite", 3, channels=(4, 16))
    with pytest.raises(ValueError, match="shape mismatch: features.2.0.weight"):
        load_state_into(other, source.state_dict())
    with pytest.raises(ValueError, match="unexpected keys: extra"):
        load_state_into(target, {**target.state_dict(), "extra": torch.zeros(1)})


# big models: building them for real takes seconds each on 2 CPUs
_BIG = {"ast", "ast_speech_commands", "beats_iter3_plus", "cnn14", "piczak_cnn", "eat_m"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _BIG else n for n in list_models()])
def test_meta_device_summary_matches_the_real_model(name: str, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # `audioclf models` counts on the meta device: the counts must be those of the real model
    from audioclf.models import model_summary

    monkeypatch.setenv("AUDIOCLF_CACHE", str(tmp_path))
    real = create_model(name, 7)
    meta = model_summary(name, 7)
    assert meta.params == sum(p.numel() for p in real.parameters())
    assert (meta.sample_rate, meta.clip_samples) == (real.sample_rate, real.clip_samples)


def test_shipped_counts_are_those_of_every_registered_model() -> None:
    # `audioclf models` lists 527-class counts from the file shipped with the package; a
    # model whose shapes change must update it (the message prints the line to write)
    import json
    from pathlib import Path

    import audioclf.models.registry as registry_mod
    from audioclf.models import model_summary
    from audioclf.models.registry import SHIPPED_SUMMARIES, get_model_info

    shipped = json.loads((Path(registry_mod.__file__).parent / SHIPPED_SUMMARIES).read_text())
    for name in list_models():
        if not get_model_info(name).fn.__module__.startswith("audioclf."):
            continue  # a model registered by a test or a plugin
        s = model_summary(name, 527, use_cache=False)  # shapes on the meta device (checked above)
        now = {"params": s.params, "sample_rate": s.sample_rate, "clip_samples": s.clip_samples}
        assert shipped.get(name) == now, f"{SHIPPED_SUMMARIES}: {name!r} should be {json.dumps(now)}"


def test_the_listing_uses_the_shipped_counts_at_527_classes(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import audioclf.models.registry as registry_mod
    from audioclf.models import model_summary

    monkeypatch.setenv("AUDIOCLF_CACHE", str(tmp_path))
    monkeypatch.setattr(registry_mod, "create_model", lambda *a, **k: pytest.fail("built a model"))
    s = model_summary("cnn14", 527)  # read from the file: no model is built, nothing is cached
    assert s.params == 80_753_615  # PANNs CNN14, as published
    assert not (tmp_path / "model_summaries.json").exists()
