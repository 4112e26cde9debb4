"""What the real ``hmhi`` command line does with odd strings and odd surroundings: markup in paths,
help texts, non-ASCII digits, usage mistakes, a closed stdout."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from hmhi_cli.cli import app
from test_segment import DAVIS, make_clip, one_line_error, run, tiny_weights  # noqa: F401

def flat(text: str) -> str:
    """``text`` without whitespace: help wraps lines where it likes, at spaces and after hyphens."""
    return re.sub(r"\s+", "", text)


def commands(group: typer.core.TyperGroup, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """Every command under ``group``, with the words that call it."""
    found = []
    for name, command in group.commands.items():
        found.append(((*path, name), command))
        if hasattr(command, "commands"):
            found += commands(command, (*path, name))
    return found


def test_every_help_text_prints_exactly_as_written():
    root = typer.main.get_command(app)
    runner = CliRunner()
    every = commands(root)
    assert {"segment", "eval", "train", "finetune", "info", "version"} <= {path[0] for path, _ in every}
    assert ("weights", "info") in {path for path, _ in every} and ("flow", "precompute") in {path for path, _ in every}
    for path, command in every:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0, (path, result.output)
        shown = flat(result.output)
        texts = [inspect.cleandoc(command.help)] if command.help else []
        texts += [param.help for param in command.params if getattr(param, "help", None)]
        assert texts, path
        for text in texts:
            assert flat(text) in shown, (path, text, result.output)
    train = flat(runner.invoke(app, ["train", "--help"]).output)
    assert "ROOT:REPEAT:seq1,seq2" in train and flat("pip install 'hmhi[train]'") in train


def test_usage_mistakes_are_one_line_with_exit_2():
    for args, words in (((), "Missing argument"), (("x.mp4", "-o", "o", "--bogus"), "--bogus"),
                        (("x.mp4", "-o", "o", "--size", "abc"), "--size")):
        result = run("segment", *args)
        message = one_line_error(result)
        assert result.returncode == 2 and words in message and "segment --help" in message, message
    result = run("nonsense")
    assert result.returncode == 2 and "nonsense" in one_line_error(result)


@pytest.mark.parametrize("shard", ["²/3", "0/³", "١/٣"])
def test_shards_take_ascii_digits_only(tmp_path, shard):
    for args in (("segment", "x.mp4", "-o", str(tmp_path / "o")), ("flow", "precompute", str(tmp_path))):
        result = run(*args, "--shard", shard)
        message = one_line_error(result)
        assert result.returncode == 2 and f"bad shard '{shard}'" in message, message


@pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")
def test_markup_in_user_strings_is_printed_as_written(tiny_weights, tmp_path):
    for spec in ("nope[/x]", "nope[bold]"):
        message = one_line_error(run("segment", str(tmp_path / spec), "-o", str(tmp_path / "o")))
        assert message == f"error: input not found: {tmp_path / spec}", message
    message = one_line_error(run("weights", "info", str(tmp_path / "w[/x].safetensors")))
    assert f"{tmp_path / 'w[/x].safetensors'}: weights file not found" in message, message
    (tmp_path / "pred").mkdir()
    message = one_line_error(run("eval", "--dataset", "davis16", "--root", str(tmp_path / "r[/x]"),
                                 "--pred", str(tmp_path / "pred")))
    assert str(tmp_path / "r[/x]") in message, message
    inputs = tmp_path / "in"
    inputs.mkdir()
    clips = [make_clip(inputs / name, frames=2) for name in ("[bold]x.mp4", "[red]y.mp4")]
    out = tmp_path / "m[" / "x]"  # m[/x]
    result = run("segment", *map(str, clips), "-o", str(out), "--weights", str(tiny_weights), "--flow", "dis")
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "done [bold]x: 2 frames" in stderr and f"-> {out / '[bold]x'}" in stderr, stderr
    assert "done [red]y: 2 frames" in stderr, stderr
    assert (out / "[bold]x" / "mask.mp4").is_file() and (out / "[red]y" / "mask.mp4").is_file()


def closed_stdout() -> None:
    os.close(1)


@pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")
def test_a_closed_stdout_is_one_line_before_any_work(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=2)
    for args in (("-o", "-"), ("-o", str(tmp_path / "out"), "--json")):
        result = subprocess.run([sys.executable, "-m", "hmhi_cli", "segment", str(clip), *args], stdout=None,
                                stderr=subprocess.PIPE, preexec_fn=closed_stdout, timeout=300)
        message = one_line_error(result)
        assert "stdout is closed" in message, message
    assert not (tmp_path / "out").exists()
