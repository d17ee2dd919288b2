"""The command line's own behaviour: help for everything, global options anywhere,
"did you mean" on typos, `config show`, the fast model listing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from audioclf import cli
from audioclf.cli import _COMMANDS, build_parser, main
from audioclf.errors import ConfigError


def _verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_verb_documents_every_argument_and_has_examples() -> None:
    # holds verbs added later to the same rule: a description, help for each argument,
    # and an epilog of copy-paste examples that use the verb
    verbs = _verbs(build_parser())
    assert set(verbs) == set(_COMMANDS)
    problems = []
    for name, p in verbs.items():
        if not p.description or len(p.description) < 20:
            problems.append(f"{name}: no description")
        examples = [line.strip() for line in (p.epilog or "").splitlines()[1:]]
        if not (p.epilog or "").startswith("examples:") or sum(f"audioclf {name}" in e for e in examples) < 1 or len(examples) < 2:
            problems.append(f"{name}: epilog without 2+ examples of `audioclf {name}`")
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                problems.append(f"{name}: argument {action.option_strings or action.dest} has no help")
    assert problems == []


def test_help_shows_examples_and_formatter_keeps_them(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "examples:\n  audioclf predict " in text
    assert "labels shown per file" in text  # --top-k documented
    assert "global options (before or after the verb)" in text


@pytest.mark.parametrize("argv", [
    ["info", "STORE", "-v"], ["-v", "info", "STORE"], ["info", "-v", "STORE"],
])
def test_verbose_before_or_after_the_verb(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.verbose + getattr(args, "verbose_after", 0) == 1 and args.store == "STORE"


def test_predict_takes_v_after_its_files() -> None:
    # the case: `audioclf predict CKPT file.flac -v` was "unrecognized arguments: -v"
    args = build_parser().parse_args(["predict", "best.ckpt", "file.flac", "-v"])
    assert args.files == ["file.flac"] and args.verbose_after == 1


def test_global_options_after_the_verb_do_not_reset_those_before() -> None:
    args = build_parser().parse_args(["-q", "--device", "cuda:1", "predict", "m.ckpt", "a.wav"])
    assert args.quiet is True and args.device == "cuda:1" and getattr(args, "verbose_after", 0) == 0
    args = build_parser().parse_args(["-v", "predict", "m.ckpt", "a.wav", "-vv", "--device", "cpu"])
    assert args.verbose == 1 and args.verbose_after == 2 and args.device == "cpu"


def test_verbose_after_the_verb_reaches_the_logger(tmp_path: Path) -> None:
    import logging

    # -vv after the verb: debug level, and errors are raised with their traceback
    from audioclf.data.store import StoreError

    with pytest.raises(StoreError, match="store not found"):
        main(["info", str(tmp_path / "none.h5"), "-vv"])
    assert logging.getLogger("audioclf").level == logging.DEBUG


def test_device_option_maps_to_the_trainer() -> None:
    from audioclf.cli import _global_overrides

    args = build_parser().parse_args(["train", "--device", "cuda:1", "-q"])
    assert _global_overrides(args) == ["trainer.accelerator=gpu", "trainer.devices='1,'", "trainer.progress_bar=false"]
    from audioclf.config import load_config

    config = load_config(None, _global_overrides(args))
    assert config.trainer.accelerator == "gpu" and config.trainer.devices == "1,"
    with pytest.raises(ValueError, match="--device tpu"):
        _global_overrides(build_parser().parse_args(["train", "--device", "tpu"]))


def test_did_you_mean_for_a_verb(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predcit", "m.ckpt", "a.wav"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'predcit'" in err and "did you mean 'predict'" in err
    assert main(["-v", "--device", "cpu", "modles"]) == 2
    assert "did you mean 'models'" in capsys.readouterr().err


def test_did_you_mean_for_a_model_dataset_and_config_key(capsys: pytest.CaptureFixture[str]) -> None:
    from audioclf.data.catalog import create_source
    from audioclf.models import create_model

    with pytest.raises(ConfigError, match="did you mean 'cnn_lite'"):
        create_model("cnn_lte", 3)
    with pytest.raises(ConfigError, match="did you mean 'esc50'"):
        create_source("esc-50")
    capsys.readouterr()
    assert main(["prepare", "synthtic", "--out", "x.h5"]) == 2
    assert "did you mean 'synthetic'" in capsys.readouterr().err
    assert main(["train", "trainer.max_epocs=3"]) == 2
    assert "did you mean 'trainer.max_epochs'" in capsys.readouterr().err
    assert main(["train", "data.max_epochs=3"]) == 2  # right name, wrong section
    assert "did you mean 'trainer.max_epochs'" in capsys.readouterr().err


def test_config_show_lists_keys_from_the_schema(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["config", "show", "--json"]) == 0
    keys = {k["key"]: k for k in json.loads(capsys.readouterr().out)}
    assert keys["trainer.max_epochs"]["type"] == "int" and keys["trainer.max_epochs"]["default"] == 10
    assert keys["trainer.max_epochs"]["allowed"] == ">= 1"
    assert keys["optim.scheduler"]["allowed"] == "none | cosine | onecycle | plateau"
    assert keys["data.val_fraction"]["allowed"] == ">= 0, < 1"
    assert keys["task.mix.alpha"]["allowed"] == "> 0"
    assert "data" not in keys and "task.mix" not in keys  # sections are not keys
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lr: 0.05\n")
    assert main(["config", "show", str(recipe), "trainer.max_epochs=3"]) == 0
    text = capsys.readouterr().out
    assert "* optim.lr: float = 0.05" in text and "* trainer.max_epochs: int = 3" in text
    assert "  optim.name: str = \"adamw\"  [adamw | adam | sgd]" in text  # unchanged: no star
    assert main(["config", "show", str(recipe), "optim.lrr=1"]) == 2


def test_models_listing_counts_on_the_meta_device_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from audioclf.models import create_model, model_summary

    monkeypatch.setenv("AUDIOCLF_CACHE", str(tmp_path))
    real = create_model("cnn14", 10)
    expected = sum(p.numel() for p in real.parameters())
    s = model_summary("cnn14", 10)
    assert (s.params, s.sample_rate, s.clip_samples) == (expected, real.sample_rate, real.clip_samples)
    cache = json.loads((tmp_path / "model_summaries.json").read_text())
    (key,) = cache
    assert key.startswith("cnn14|10|") and cache[key]["params"] == expected
    # a cached count is used as is (here: a planted one)
    cache[key]["params"] = 123
    (tmp_path / "model_summaries.json").write_text(json.dumps(cache))
    assert model_summary("cnn14", 10).params == 123
    assert model_summary("cnn14", 10, build=True).params == expected  # --build ignores the cache
    # a meta-device build allocates nothing: the listing never builds real tensors
    calls = []
    monkeypatch.setattr(torch.nn.Module, "register_parameter", _spy(torch.nn.Module.register_parameter, calls))
    model_summary("cnn6", 10)
    assert calls and all(p is None or p.device.type == "meta" for p in calls)
    capsys.readouterr()
    assert main(["models", "cnn1", "--classes", "10", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"cnn10", "cnn14"} and rows["cnn14"]["params"] == "0.00 M"  # the planted 123


def _spy(fn, calls):  # type: ignore[no-untyped-def]
    def wrapped(self, name, param):  # type: ignore[no-untyped-def]
        calls.append(param)
        return fn(self, name, param)

    return wrapped


def test_a_verb_may_define_its_own_device_option(monkeypatch: pytest.MonkeyPatch) -> None:
    import audioclf.cli as cli

    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="cuda", help="this verb's own device")

    monkeypatch.setattr(cli, "_COMMANDS", cli._COMMANDS.copy())
    cli.command("gpuonly", "a verb with its own --device", lambda a: 0, examples=("audioclf gpuonly", "audioclf gpuonly -v"))(add)
    args = cli.build_parser().parse_args(["gpuonly", "-v"])
    assert args.device == "cuda" and args.verbose_after == 1


def test_quiet_after_the_verb_silences_info_and_progress(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    import audioclf.cli as cli

    assert main(["config", "show", "--json", "-q"]) == 0
    assert logging.getLogger("audioclf").level == logging.WARNING and cli._QUIET
    calls = []
    with cli.progress_bar() as update:  # drawn nothing: a no-op callback
        update("decoding", 1, 2)
        calls.append(1)
    assert calls and "decoding" not in capsys.readouterr().err
    assert main(["config", "show", "--json"]) == 0
    assert logging.getLogger("audioclf").level == logging.INFO and not cli._QUIET


# --- how the CLI ends: AudioclfError exit 2, bugs propagate ------------------------

def _failing_verb(monkeypatch: pytest.MonkeyPatch, error: Exception) -> str:
    """Register (for this test only) a verb ``fail`` that raises ``error``."""

    def fail(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(cli, "_COMMANDS", cli._COMMANDS.copy())
    cli.command("fail", "a verb that raises", fail, examples=("audioclf fail", "audioclf fail -v"))(lambda p: None)
    return "fail"


def test_audioclf_errors_are_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    verb = _failing_verb(monkeypatch, ConfigError("model.name: unknown model 'x'"))
    assert cli.main([verb]) == 2
    assert "error: model.name: unknown model 'x'" in capsys.readouterr().err


@pytest.mark.parametrize("bug", [ValueError("bad value"), TypeError("f() got 2 arguments"), KeyError("k"),
                                 RuntimeError("state")])
def test_other_exceptions_are_bugs_not_user_errors(monkeypatch: pytest.MonkeyPatch, bug: Exception) -> None:
    # ValueError included: user errors are AudioclfError kinds (ConfigError is one), a bare
    # ValueError is audioclf's own fault and must not be dressed up as the user's
    verb = _failing_verb(monkeypatch, bug)
    with pytest.raises(type(bug)):
        cli.main([verb])


def test_a_bug_exits_1_with_its_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    # the console script's own wrapper: sys.exit(main())
    code = (
        "import sys\nfrom audioclf import cli\n"
        "def boom(args):\n    raise ValueError('a bug, not a user error')\n"
        "cli.command('boom', 'raises', boom, examples=('audioclf boom', 'audioclf boom -v'))(lambda p: None)\n"
        "sys.argv = ['audioclf', 'boom']\nsys.exit(cli.main())\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
    assert "Traceback (most recent call last)" in run.stderr
    assert "ValueError: a bug, not a user error" in run.stderr and "error:" not in run.stderr.splitlines()[0]


def test_a_bad_model_setting_is_exit_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.training.helpers import make_store

    store = make_store(tmp_path / "s.h5")
    capsys.readouterr()
    # fmin above the Nyquist frequency of the model's 16 kHz: the frontend refuses it
    argv = ["train", f"data.store={store}", "model.name=cnn_lite", "model.settings.fmin=9000",
            f"output_dir={tmp_path / 'runs'}", "recipe=none"]
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "error: log-mel needs 0 <= fmin < fmax <= sample_rate/2, got fmin=9000" in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists(), "refused before any run directory is made"


@pytest.mark.parametrize(("argv", "message"), [
    (["prepare", "synthetic", "--out", "{tmp}/x.h5", "-o", "clips_per_class=2"],
     "dataset 'synthetic': clips_per_class must be at least 3"),
    (["benchmark", "--models", "cnn_lite", "--read-workers", "a,b"], "--read-workers 'a,b': expected counts"),
    (["export", "{tmp}/m.ckpt", "--format", "torchscript", "--quantize", "int8"],
     "--quantize int8 needs --format onnx"),
])
def test_user_errors_from_options_are_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    capsys.readouterr()
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert f"error: {message}" in " ".join(capsys.readouterr().err.split())


def test_a_verb_registered_twice_is_a_programming_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_COMMANDS", cli._COMMANDS.copy())
    with pytest.raises(ValueError, match="command 'models' is registered twice"):
        cli.command("models", "another models verb", lambda a: 0)(lambda p: None)

