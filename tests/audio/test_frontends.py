import librosa
import numpy as np
import pytest
import torch

from audioclf.audio.frontends import LogMel, create_frontend, list_frontends, slaney_mel_filterbank
from audioclf.errors import ConfigError
from tests.golden import load_golden, rule_value


def test_logmel_reproduces_panns_golden() -> None:
    """The frontend computes PANNs' log-mel exactly, given the checkpoint's STFT kernels and
    mel matrix (the golden file fills them by its rule)."""
    g = load_golden("panns_cnn14")
    shapes = dict(g["state_dict_keys"])
    fe = LogMel(**{"sample_rate": 32000, "n_fft": 1024, "hop_length": 320, "n_mels": 64, "fmin": 50, "fmax": 14000})
    for ours, theirs in (
        ("stft_real", "spectrogram_extractor.stft.conv_real.weight"),
        ("stft_imag", "spectrogram_extractor.stft.conv_imag.weight"),
        ("mel_fb", "logmel_extractor.melW"),
    ):
        getattr(fe, ours).copy_(rule_value(theirs, shapes[theirs]))
    out = fe(g["waveform"])
    assert out.shape == (2, 1001, 64)
    assert (out - g["logmel"][:, 0]).abs().max() < 1e-3


def test_mel_filterbank_matches_librosa() -> None:
    ours = slaney_mel_filterbank(32000, 1024, 64, 50, 14000)
    ref = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000).T
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_conv_stft_equals_torch_stft() -> None:
    fe = LogMel(16000, n_fft=512, hop_length=160, n_mels=40, fmin=0, fmax=8000)
    x = torch.randn(2, 16000)
    ref = torch.stft(x, 512, 160, window=torch.hann_window(512), center=True, pad_mode="reflect", return_complex=True)
    ref_power = ref.abs().pow(2).transpose(1, 2)
    ours = fe.power_spectrogram(x)
    assert ours.shape == ref_power.shape
    assert ((ours - ref_power).abs().max() / ref_power.max()) < 1e-5
    assert fe(x).shape == (2, fe.num_frames(16000), 40)


def test_logmel_is_float32_under_autocast_and_clips_top_db() -> None:
    fe = LogMel(16000, 512, 160, 40, 0, 8000, top_db=30.0)
    x = torch.randn(1, 8000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fe(x)
    assert y.dtype == torch.float32
    assert float(y.max() - y.min()) <= 30.0 + 1e-4


def test_bad_settings_and_registry() -> None:
    with pytest.raises(ValueError, match="fmin < fmax"):
        LogMel(16000, fmin=100, fmax=9000)
    assert "logmel" in list_frontends()
    assert isinstance(create_frontend("logmel", sample_rate=16000, fmax=8000), LogMel)
    with pytest.raises(ValueError, match="input of 200 samples is too short for the log-mel frontend"):
        LogMel(16000, n_fft=512, fmax=8000)(torch.zeros(1, 200))
    with pytest.raises(ConfigError, match="unknown frontend"):
        create_frontend("nope")
