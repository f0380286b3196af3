"""README.md's CLI blocks say what the parser takes: every option they name exists for its subcommand, with the
default they give it, and `run`, `serve`, `predict` and `search` are shown whole."""

import argparse
import pathlib
import re
from typing import Optional

import pytest

from cnnpipe.cli import main as cli

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SHOWN_WHOLE = ("run", "serve", "predict", "search")
NUMBER = re.compile(r"\d+(\.\d+)?")  # a default the README writes out (not a placeholder such as K or PATH)
OPTION = re.compile(r"\[?(--[a-z][a-z0-9-]*)(?:[ =]([^\]\[ |…]+))?")


def usage_lines() -> dict[str, list[str]]:
    """The README's usage lines (in ``` blocks, starting `cnnpipe COMMAND`, with their continuation lines) by
    subcommand; `cnnpipe a|b ...` counts for both."""
    lines: dict[str, list[str]] = {}
    in_block, commands = False, []
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_block, commands = not in_block, []
            continue
        started = re.match(r"cnnpipe ([a-z|]+)\b(.*)", line) if in_block else None
        if started:
            commands, line = started[1].split("|"), started[2]
        elif not line.startswith(" "):
            commands = []
        for command in commands:
            lines.setdefault(command, []).append(line.split("#")[0])
    return lines


def parser_options(command: str) -> dict[str, argparse.Action]:
    subcommands = next(action for action in cli.build_parser()._actions
                       if isinstance(action, argparse._SubParsersAction))
    return {flag: action for action in subcommands.choices[command]._actions for flag in action.option_strings
            if flag.startswith("--") and flag != "--help"}


def documented_default(action: argparse.Action) -> Optional[str]:
    """An option's default when it is a number: the parser's, or for the pipeline's options (whose defaults the
    config fills in) the one their help states."""
    if action.default is argparse.SUPPRESS:
        stated = re.search(r"\bdefault (-?\d+(?:\.\d+)?)\b", action.help or "")
        return stated[1] if stated else None
    number = isinstance(action.default, (int, float)) and not isinstance(action.default, bool)
    return str(action.default) if number else None


def shown(command: str) -> dict[str, str]:
    """The options the README shows for `command`, each with the value it writes after it ("" for none)."""
    return {flag: value or "" for line in usage_lines()[command] for flag, value in OPTION.findall(line)}


@pytest.mark.parametrize("command", sorted(usage_lines()))
def test_every_option_the_readme_names_exists_with_its_default(command):
    options = parser_options(command)
    for flag, value in shown(command).items():
        assert flag in options, f"README shows `cnnpipe {command} {flag}`, which the parser does not take"
        default = documented_default(options[flag])
        if NUMBER.fullmatch(value) and default is not None:
            assert float(value) == pytest.approx(float(default)), \
                f"README gives `cnnpipe {command} {flag} {value}`; its default is {default}"


@pytest.mark.parametrize("command", SHOWN_WHOLE)
def test_the_main_commands_are_shown_whole(command):
    missing = sorted(set(parser_options(command)) - set(shown(command)))
    assert not missing, f"README's usage of `cnnpipe {command}` leaves out {missing}"
