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
    # loaded as a checkpoint is: the rule's STFT kernels are no DFT, so this also checks that
    # such kernels select the convolution form
    fe.load_state_dict({ours: rule_value(theirs, shapes[theirs]) for ours, theirs in (
        ("stft_real", "spectrogram_extractor.stft.conv_real.weight"),
        ("stft_imag", "spectrogram_extractor.stft.conv_imag.weight"),
        ("mel_fb", "logmel_extractor.melW"),
    )})
    out = fe(g["waveform"])
    assert out.shape == (2, 1001, 64)
    assert (out - g["logmel"][:, 0]).abs().max() < 1e-3


def test_fft_form_equals_convolution_form() -> None:
    """The FFT form (training and eager inference) and the convolution form (the exported
    graph) of the same frontend give the same log-mel; a state dict of DFT kernels (as every
    published checkpoint has) keeps the FFT form, and one of other kernels selects the
    convolution, whose output is then that of the kernels given."""
    torch.manual_seed(0)
    x = torch.randn(3, 16000) * torch.linspace(0.0, 1.0, 16000)  # includes near-silence
    for settings in ({"sample_rate": 16000, "n_fft": 512, "hop_length": 160, "fmax": None}, {"sample_rate": 32000, "n_fft": 1024,
                     "hop_length": 320, "win_length": 800}):
        fe = LogMel(**settings)
        fe.load_state_dict(LogMel(**settings).state_dict())
        assert fe._fft_form
        fast = fe(x)
        fe._fft_form = False
        slow = fe(x)
        assert fast.shape == slow.shape
        assert (fast - slow).abs().max() < 1e-3  # dB
        # float64 DFT of the framed signal, computed here with numpy, as a third opinion
        n_fft, hop = settings["n_fft"], settings["hop_length"]
        padded = np.pad(x.numpy().astype(np.float64), ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
        frames = np.stack([padded[:, i * hop : i * hop + n_fft] for i in range(fast.shape[1])], axis=1)
        window = fe.stft_real[0, 0].double().numpy()
        power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
        ref = 10 * np.log10(np.maximum(power @ fe.mel_fb.double().numpy(), 1e-10))
        assert np.abs(fast.numpy() - ref).max() < 1e-3
    other = LogMel(16000, 512, 160, fmax=None)
    kernels = other.state_dict()
    kernels["stft_imag"] = torch.zeros_like(kernels["stft_imag"])  # a "spectrogram" of the real part alone
    other.load_state_dict(kernels)
    assert not other._fft_form
    real = torch.nn.functional.conv1d(torch.nn.functional.pad(x.unsqueeze(1), (256, 256), mode="reflect"),
                                      kernels["stft_real"], stride=160)
    expected = 10 * torch.log10(torch.clamp(real.pow(2).transpose(1, 2) @ other.mel_fb, min=1e-10))
    torch.testing.assert_close(other(x), expected)


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
