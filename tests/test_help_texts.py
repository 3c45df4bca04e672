"""Every script's --help: each flag has a help text and shows its default, no choice list holds an empty
string, Train.py's settings list has no empty heading, align_faces names the landmark order. The scripts run as
`python <script> --help` does (runpy, in process: no torch start-up per script)."""
from __future__ import annotations

import argparse
import contextlib
import io
import pkgutil
import runpy
import sys

import pytest

from tests.conftest import REPO

# every evaluation script and every tool, discovered: a new one is checked without being listed here
SCRIPTS = sorted(p.name for p in REPO.glob("*_Evaluation.py"))
MODULES = sorted(f"Utils.tools.{m.name}" for m in pkgutil.iter_modules([str(REPO / "Utils" / "tools")])) + [
    "Backbones", "Datasets.augment"]


def _help(target: str, monkeypatch, argv_tail=("--help",)) -> tuple[str, list[argparse.ArgumentParser]]:
    """Run `target --help` as __main__; returns the printed text and every parser that printed its help."""
    parsers = []
    original = argparse.ArgumentParser.print_help

    def record(self, file=None):
        parsers.append(self)
        return original(self, file)

    monkeypatch.setattr(argparse.ArgumentParser, "print_help", record)
    out = io.StringIO()
    monkeypatch.setattr(sys, "argv", [target, *argv_tail])
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        if target.endswith(".py"):
            runpy.run_path(str(REPO / target), run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=False)
    assert stop.value.code in (0, None)
    return out.getvalue(), parsers


def _check_parser(parser: argparse.ArgumentParser) -> None:
    formatter = parser.formatter_class(prog=parser.prog)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _check_parser(sub)
            continue
        assert action.help, f"{parser.prog}: {name} has no help"
        assert "" not in (action.choices or []), f"{parser.prog}: {name} offers an empty choice"
        if action.option_strings and action.default is not argparse.SUPPRESS:
            assert "default" in formatter._get_help_string(action), f"{parser.prog}: {name} hides its default"


@pytest.mark.parametrize("target", SCRIPTS + MODULES)
def test_help_of_every_script(target, monkeypatch):
    text, parsers = _help(target, monkeypatch)
    assert parsers and text.strip()
    for parser in parsers:
        _check_parser(parser)
    if target == "Utils.tools.align_faces":
        assert "left eye, right eye, nose tip, left mouth corner, right mouth corner" in " ".join(text.split())


def test_train_help_lists_every_setting_with_default_and_help(monkeypatch):
    from Config import Config

    monkeypatch.setattr(sys, "argv", ["Train.py", "--help"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        runpy.run_path(str(REPO / "Train.py"), run_name="__main__")
    assert stop.value.code == 0
    text = out.getvalue()
    lines = [l for l in text.splitlines() if l.startswith("  --")]
    assert len(lines) == len(Config.field_names())
    for line in lines:
        flag, _, help_ = line.strip().partition(" ")
        assert "=" in flag and help_.strip(), f"no default or no help: {line}"
    assert "derived values" not in text.lower()
    headings = [i for i, l in enumerate(text.splitlines()) if l.endswith(":") and not l.startswith(" ")]
    body = text.splitlines()
    for i in headings[1:]:  # every section heading is followed by at least one setting
        assert i + 1 < len(body) and body[i + 1].startswith("  --"), f"empty heading {body[i]!r}"
