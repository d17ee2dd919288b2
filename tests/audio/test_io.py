from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf.audio.io import AudioDecodeError, audio_info, load_audio, resample


def _tone(sr: int, seconds: float = 0.5, f: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)


@pytest.mark.parametrize(("suffix", "subtype"), [(".wav", "PCM_16"), (".wav", "PCM_24"), (".wav", "FLOAT"), (".flac", None), (".ogg", "VORBIS")])
def test_formats_decode_to_float32_mono(tmp_path: Path, suffix: str, subtype: str | None) -> None:
    x = _tone(16000)
    path = tmp_path / f"a{suffix}"
    sf.write(path, x, 16000, subtype=subtype)
    y, sr = load_audio(path)
    assert sr == 16000 and y.dtype == np.float32 and y.ndim == 1
    assert abs(y.size - x.size) < 400  # vorbis may pad a little
    lossy = subtype == "VORBIS"
    assert np.abs(y[:1000] - x[:1000]).max() < (0.1 if lossy else 1e-3)


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="this libsndfile has no MP3 support")
def test_mp3_decodes_where_libsndfile_supports_it(tmp_path: Path) -> None:
    x = _tone(16000, 1.0)
    sf.write(tmp_path / "a.mp3", x, 16000)
    y, sr = load_audio(tmp_path / "a.mp3", 8000)
    assert sr == 8000 and abs(y.size - 8000) < 1200  # MP3 frames pad the ends
    peak_hz = np.argmax(np.abs(np.fft.rfft(y))) * sr / y.size
    assert abs(peak_hz - 440) < 5


def test_multichannel_is_downmixed(tmp_path: Path) -> None:
    left, right = _tone(8000), np.zeros(4000, np.float32)
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), 8000, subtype="FLOAT")
    y, _ = load_audio(tmp_path / "st.wav")
    np.testing.assert_allclose(y, left / 2, atol=1e-6)


def test_resampling_keeps_the_tone(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", _tone(44100, 1.0, 1000.0), 44100)
    y, sr = load_audio(tmp_path / "a.wav", 16000)
    assert sr == 16000 and abs(y.size - 16000) <= 1
    peak_hz = np.argmax(np.abs(np.fft.rfft(y))) * sr / y.size
    assert abs(peak_hz - 1000) < 2
    assert resample(y, 16000, 16000) is y


def test_partial_read(tmp_path: Path) -> None:
    x = np.arange(16000, dtype=np.float32) / 16000
    sf.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    y, _ = load_audio(tmp_path / "a.wav", start=0.5, duration=0.25)
    np.testing.assert_allclose(y, x[8000:12000])


def test_missing_empty_truncated_and_non_audio_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match=r"empty\.wav: the file is empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "text.wav").write_text("this is not audio at all" * 10)
    with pytest.raises(AudioDecodeError, match=r"text\.wav: not a readable audio file"):
        load_audio(tmp_path / "text.wav")
    sf.write(tmp_path / "full.wav", _tone(16000, 1.0), 16000)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioDecodeError, match=r"cut\.wav: truncated"):
        load_audio(tmp_path / "cut.wav")
    with pytest.raises(AudioDecodeError, match="is a directory"):
        load_audio(tmp_path)


def test_audio_info(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.flac", _tone(22050, 2.0), 22050)
    info = audio_info(tmp_path / "a.flac")
    assert info.sample_rate == 22050 and info.channels == 1 and info.duration == pytest.approx(2.0)


@pytest.mark.parametrize(("bad", "message"), [(5e29, "samples reach 5e\\+29"), (np.nan, "NaN or infinite"), (np.inf, "NaN or infinite")])
def test_absurd_or_non_finite_float_samples_are_an_error_naming_the_file(tmp_path: Path, bad: float, message: str) -> None:
    from audioclf.audio.io import decode_bytes, stream_audio

    x = _tone(16000)
    x[100] = bad
    path = tmp_path / "loud.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match=rf"loud.wav: .*{message}"):
        load_audio(path)
    with pytest.raises(AudioDecodeError, match=message):
        list(stream_audio(path, 8000))
    with pytest.raises(AudioDecodeError, match=message):
        decode_bytes(path.read_bytes(), name="upload.wav")


def test_float_files_a_little_over_full_scale_still_load(tmp_path: Path) -> None:
    x = _tone(16000) * 3.0  # peaks at 1.5: a float mix that clipped, still audio
    sf.write(tmp_path / "hot.wav", x, 16000, subtype="FLOAT")
    y, _ = load_audio(tmp_path / "hot.wav")
    assert np.allclose(y, x)


# -- fuzzing: whatever the bytes, a clear AudioDecodeError or finite audio, never a crash ------------
def _seed_files() -> list[bytes]:
    import io

    x = _tone(8000, 0.05)
    out = []
    for fmt, subtype in (("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")):
        buf = io.BytesIO()
        sf.write(buf, x, 8000, format=fmt, subtype=subtype)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_files()


def _decodes_or_says_why(data: bytes) -> None:
    from audioclf.audio.io import decode_bytes

    try:
        audio, rate = decode_bytes(data, name="fuzz")
    except AudioDecodeError as err:
        assert "fuzz" in str(err)
        return
    assert audio.dtype == np.float32 and audio.ndim == 1 and rate > 0
    assert np.all(np.isfinite(audio))


def test_fuzz_decoder_on_random_bytes() -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=2048) | st.sampled_from([b"RIFF", b"fLaC", b"OggS"]).flatmap(lambda m: st.binary(max_size=512).map(lambda b: m + b)))
    def run(data: bytes) -> None:
        _decodes_or_says_why(data)

    run()


def test_fuzz_decoder_on_damaged_real_files() -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(range(len(SEEDS))), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
           st.integers(0, 10**6))
    def run(which: int, edits: list[tuple[int, int]], cut: int) -> None:
        data = bytearray(SEEDS[which])
        for pos, value in edits:  # overwrite bytes, headers included
            data[pos % len(data)] = value
        _decodes_or_says_why(bytes(data[: max(1, cut % (len(data) + 1))]))

    run()
