"""Speech Commands v0.02: one-second spoken words, 35 words or the 12-class keyword task.

Sources (SHA-256 and sizes as published with TensorFlow Datasets):

* ``speech_commands_v0.02.tar.gz``, flat: ``<word>/<speaker>_nohash_<n>.wav`` (16 kHz),
  ``_background_noise_/*.wav`` (six long noise recordings), ``validation_list.txt`` and
  ``testing_list.txt``. The lists assign whole speakers (by a hash of the speaker id) to
  validation or test, so the splits are speaker-disjoint; every other clip is training.
* ``speech_commands_test_set_v0.02.tar.gz``, the canonical test set of the 12-class task:
  one directory per command plus ``_silence_`` and ``_unknown_``.

``classes=35`` (default): every word is a class; splits from the two lists.
``classes=12``: ``yes no up down left right on off stop go``, ``_unknown_`` (the other 25
words) and ``_silence_``, cut as 1-second windows from ``_background_noise_`` (one noise
file, ``running_tap`` by default, gives the validation windows, the others the training
windows); the test split is the test archive (``test_set=archive``) or the clips of
``testing_list.txt`` (``test_set=list``). The noise recordings stay in place for
augmentation (the report and the store's provenance name them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audioclf.audio.io import audio_info
from audioclf.data.catalog.registry import (
    DatasetInfo,
    DatasetSource,
    Item,
    Option,
    ProgressFn,
    register_dataset,
)
from audioclf.data.download import DatasetLayoutError, Remote, describe_dir, fetch_archive, join_url
from audioclf.errors import ConfigError

BASE_URL = "http://download.tensorflow.org/data/"
MAIN = Remote(
    url=BASE_URL + "speech_commands_v0.02.tar.gz",
    filename="speech_commands_v0.02.tar.gz",
    checksum="sha256:af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
    size=2428923189,
)
TEST = Remote(
    url=BASE_URL + "speech_commands_test_set_v0.02.tar.gz",
    filename="speech_commands_test_set_v0.02.tar.gz",
    checksum="sha256:cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df",
    size=112563277,
)
MAIN_DIR = "speech_commands_v0.02"
TEST_DIR = "speech_commands_test_set_v0.02"
NOISE_DIR = "_background_noise_"
SILENCE, UNKNOWN = "_silence_", "_unknown_"
WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward",
    "four", "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on",
    "one", "right", "seven", "sheila", "six", "stop", "three", "tree", "two", "up", "visual",
    "wow", "yes", "zero",
)  # fmt: skip
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# the order of TensorFlow's reference keyword-spotting models
LABELS_12 = (SILENCE, UNKNOWN, *COMMANDS)
SILENCE_SECONDS = 1.0


@register_dataset
class SpeechCommands(DatasetSource):
    info = DatasetInfo(
        name="speech_commands",
        title="Google Speech Commands v0.02 (35 words, or the 12-class task with -o classes=12)",
        task="single_label",
        classes="35 (or 12: 10 commands + _unknown_ + _silence_)",
        clips="105,829 (35 words: 84,843 train / 9,981 validation / 11,005 test)",
        protocol="splits train/validation/test from validation_list.txt and testing_list.txt (speaker-disjoint); 12 classes: test = the official test archive",
        license="CC BY 4.0",
        homepage="https://arxiv.org/abs/1804.03209",
        sample_rate=16000,
        citation="P. Warden, Speech Commands: A Dataset for Limited-Vocabulary Speech Recognition, arXiv:1804.03209, 2018",
    )
    options = {
        "classes": Option(35, "35 (every word) or 12 (10 commands + _unknown_ + _silence_)", int),
        "test_set": Option("archive", "12 classes: test split from the test 'archive' or from testing_'list'", str),
        "silence_hop": Option(0.5, "12 classes: seconds between the starts of 1-s _silence_ windows", (int, float)),
        "silence_validation": Option("running_tap", "12 classes: noise file whose windows are validation _silence_", str),
        "base_url": Option(BASE_URL, "where both archives are downloaded from", str),
        "checksum": Option(None, "checksum of the main archive (default: the published SHA-256 for the official URL)", str),
        "test_checksum": Option(None, "checksum of the test archive (default: the published SHA-256 for the official URL)", str),
    }

    def __init__(self, root: str | Path | None = None, **options: Any) -> None:
        super().__init__(root, **options)
        if self.opts["classes"] not in (12, 35):
            raise ConfigError(f"dataset 'speech_commands': classes must be 12 or 35, got {self.opts['classes']}")
        if self.opts["test_set"] not in ("archive", "list"):
            raise ConfigError(f"dataset 'speech_commands': test_set must be 'archive' or 'list', got {self.opts['test_set']!r}")
        if float(self.opts["silence_hop"]) <= 0:
            raise ConfigError("dataset 'speech_commands': silence_hop must be positive")
        self._report: dict[str, Any] = {}

    @property
    def twelve(self) -> bool:
        return self.opts["classes"] == 12

    def _uses_test_archive(self) -> bool:
        return self.twelve and self.opts["test_set"] == "archive"

    # -- where the files are ----------------------------------------------------------
    def main_dir(self) -> Path | None:
        """The unpacked main archive (``ROOT/speech_commands_v0.02`` or ``ROOT``), if present."""
        root = self.require_root()
        for d in (root / MAIN_DIR, root):
            if (d / "validation_list.txt").is_file() or (d / "testing_list.txt").is_file():
                return d
        return None

    def test_dir(self) -> Path | None:
        d = self.require_root() / TEST_DIR
        return d if (d / SILENCE).is_dir() else None

    def background_noise_files(self) -> list[Path]:
        """The long noise recordings of ``_background_noise_``, kept for augmentation."""
        d = self.main_dir()
        return sorted((d / NOISE_DIR).glob("*.wav")) if d is not None else []

    def _remote(self, remote: Remote, checksum_option: str) -> Remote:
        return remote.with_overrides(join_url(self.opts["base_url"], remote.filename), self.opts[checksum_option])

    def fetch(self, progress: ProgressFn | None = None) -> None:
        root = self.require_root()
        if self.main_dir() is None:
            fetch_archive(self._remote(MAIN, "checksum"), root, root / MAIN_DIR, progress)
        self._check_main()
        if self._uses_test_archive() and self.test_dir() is None:
            fetch_archive(self._remote(TEST, "test_checksum"), root, root / TEST_DIR, progress)
            self._check_test()

    def _check_main(self) -> Path:
        root = self.require_root()
        d = self.main_dir()
        expected = (
            f"validation_list.txt, testing_list.txt, {NOISE_DIR}/ and one directory per word "
            f"(the flat layout of {MAIN.filename}, unpacked into {root / MAIN_DIR})"
        )
        if d is None:
            raise DatasetLayoutError(f"dataset 'speech_commands': expected {expected}; {describe_dir(root / MAIN_DIR)}")
        missing = [n for n in ("validation_list.txt", "testing_list.txt") if not (d / n).is_file()]
        missing += [f"{w}/" for w in WORDS if not (d / w).is_dir()]
        if self.twelve and not self.background_noise_files():
            missing.append(f"{NOISE_DIR}/*.wav")
        if missing:
            raise DatasetLayoutError(
                f"dataset 'speech_commands': {d} lacks {', '.join(missing[:8])}"
                f"{' ...' if len(missing) > 8 else ''}; expected {expected}"
            )
        return d

    def _check_test(self) -> Path:
        d = self.require_root() / TEST_DIR
        missing = [f"{x}/" for x in (*COMMANDS, SILENCE, UNKNOWN) if not (d / x).is_dir()]
        if missing:
            raise DatasetLayoutError(
                f"dataset 'speech_commands': the test archive {TEST.filename} should unpack to one directory "
                f"per command plus {SILENCE}/ and {UNKNOWN}/ in {d}; missing {', '.join(missing)}; {describe_dir(d)}"
            )
        return d

    # -- labels and clips -------------------------------------------------------------
    def label_names(self) -> list[str]:
        return list(LABELS_12 if self.twelve else WORDS)

    def _target(self, word: str) -> int:
        if not self.twelve:
            return WORDS.index(word)
        return LABELS_12.index(word) if word in LABELS_12 else LABELS_12.index(UNKNOWN)

    def items(self) -> list[Item]:
        d = self._check_main()
        lists = {name: _read_list(d / f"{name}_list.txt") for name in ("validation", "testing")}
        test_from_archive = self._uses_test_archive()
        items: list[Item] = []
        listed_found = {name: 0 for name in lists}
        for word in WORDS:
            for f in sorted((d / word).glob("*.wav")):
                rel = f"{word}/{f.name}"
                split = "train"
                if rel in lists["validation"]:
                    split = "validation"
                    listed_found["validation"] += 1
                elif rel in lists["testing"]:
                    split = "test"
                    listed_found["testing"] += 1
                    if test_from_archive:
                        continue  # the 12-class test split is the test archive
                items.append(Item(clip_id=rel[: -len(".wav")], target=self._target(word), split=split, path=str(f)))
        extra_dirs = sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith("_") and p.name not in WORDS)
        if self.twelve:
            items += self._silence_items()
        if test_from_archive:
            t = self.test_dir() or self._check_test()
            for x in (*COMMANDS, SILENCE, UNKNOWN):
                for f in sorted((t / x).glob("*.wav")):
                    items.append(Item(clip_id=f"testset/{x}/{f.stem}", target=LABELS_12.index(x), split="test", path=str(f)))
        self._report = {
            "background_noise_dir": str(d / NOISE_DIR),
            "background_noise": [p.name for p in self.background_noise_files()],
            "listed_but_missing": {k: len(v) - listed_found[k] for k, v in lists.items()},
            "ignored_directories": extra_dirs,
        }
        return items

    def _silence_items(self) -> list[Item]:
        """1-s windows of the noise recordings; one file's windows validate, the rest train."""
        hop_s = float(self.opts["silence_hop"])
        held_out = self.opts["silence_validation"]
        files = self.background_noise_files()
        if held_out not in {f.stem for f in files}:
            raise ConfigError(
                f"dataset 'speech_commands': silence_validation={held_out!r} is not one of the noise files "
                f"{[f.stem for f in files]}"
            )
        items = []
        for f in files:
            info = audio_info(f)
            win, hop = int(round(SILENCE_SECONDS * info.sample_rate)), max(1, int(round(hop_s * info.sample_rate)))
            split = "validation" if f.stem == held_out else "train"
            for start in range(0, info.frames - win + 1, hop):
                t0 = start / info.sample_rate
                items.append(
                    Item(
                        clip_id=f"{NOISE_DIR}/{f.stem}/{start:09d}",
                        target=LABELS_12.index(SILENCE),
                        split=split,
                        path=str(f),
                        meta={"start": t0, "duration": SILENCE_SECONDS, "source": f"{f}@{t0:.3f}s"},
                    )
                )
        return items

    def store_name(self) -> str:
        return f"speech_commands_{self.opts['classes']}.h5"

    def dataset_version(self) -> str:
        return "0.02"

    def provenance(self) -> dict[str, Any]:
        prov = super().provenance()
        d = self.main_dir()
        prov["background_noise_dir"] = str(d / NOISE_DIR) if d is not None else None
        return prov

    def extra_report(self) -> dict[str, Any]:
        return dict(self._report)


def _read_list(path: Path) -> set[str]:
    return {ln.strip() for ln in path.read_text().splitlines() if ln.strip()}
