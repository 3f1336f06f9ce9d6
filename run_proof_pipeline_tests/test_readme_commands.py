"""README.md's "## The command line" listing cannot drift from the CLI (issue #14, item 4): it
is a reference listing (a ```text block, not a script to paste); every command it lists
exists, `run-proof <command> --help` exits 0 and names every `--option` the line shows (in the
command or in its comment), and every command of the CLI is listed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.plan.coordinator_tests import project_root

SECTION = "\n## The command line\n"
OPTION = re.compile(r"--[a-z][a-z0-9-]*")
WORD = re.compile(r"[a-z][a-z0-9-]*")


@dataclass(frozen=True)
class ListedLine:
    text: str
    commands: tuple[str, ...]  # "db start", "verify", ...
    options: tuple[str, ...]  # shown in the command part
    comment_options: tuple[str, ...]  # shown in its comment (for one of the line's commands)


def listing() -> tuple[str, str]:
    """(the fence's info string, the block) of the section's first fenced block."""
    readme = (project_root() / "README.md").read_text(encoding="utf-8")
    assert SECTION in readme, "README.md has no '## The command line' section"
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    found = re.search(r"^```([^\n]*)\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    assert found, "'## The command line' has no fenced block"
    return found.group(1).strip(), found.group(2)


def parse(line: str) -> ListedLine:
    """`run-proof db start | stop | url # ...` -> db start, db stop, db url. The command's
    words are the leading lowercase words; `| word` replaces the last one."""
    head, sep, comment = line.partition(" #")
    command = head if sep else line
    tokens = command.split()
    assert tokens[0] == "run-proof", f"not a run-proof line: {line!r}"
    words: list[str] = []
    rest = tokens[1:]
    while rest and WORD.fullmatch(rest[0]):
        words.append(rest.pop(0))
    assert words, f"no command in {line!r}"
    commands = [" ".join(words)]
    while len(rest) >= 2 and rest[0] == "|" and WORD.fullmatch(rest[1]):
        commands.append(" ".join([*words[:-1], rest[1]]))
        rest = rest[2:]
    return ListedLine(
        line,
        tuple(commands),
        tuple(OPTION.findall(" ".join(rest))),
        tuple(OPTION.findall(comment)),
    )


def listed_lines() -> list[ListedLine]:
    _, block = listing()
    return [parse(line) for line in block.splitlines() if line.strip()]


@cache
def help_text(command: str) -> str:
    result = CliRunner().invoke(
        app, [*command.split(), "--help"], prog_name="run-proof", env={"COLUMNS": "240"}
    )
    assert result.exit_code == 0, f"run-proof {command} --help exited {result.exit_code}:\n" + (
        result.output
    )
    # A group's help also exits 0: the usage line says that this is the command itself.
    [usage] = [line for line in result.output.splitlines() if "Usage:" in line]
    assert f"Usage: run-proof {command} [OPTIONS]" in usage, result.output
    assert "COMMAND" not in usage, f"run-proof {command} is a group, not a command: {usage}"
    return result.output


def names(help_output: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_output) is not None


def cli_commands() -> set[str]:
    """Every leaf command of the CLI, as words after `run-proof`."""
    root = typer.main.get_command(app)
    found: set[str] = set()

    def walk(command: Any, path: list[str], ctx: Any) -> None:
        # A group (typer's own click: not click.Group) lists its commands.
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(sub, [*path, name], type(ctx)(sub, parent=ctx, info_name=name))
        else:
            found.add(" ".join(path))

    walk(root, [], root.make_context("run-proof", [], resilient_parsing=True))
    return found


def test_the_listing_is_a_text_block_of_run_proof_lines() -> None:
    info, block = listing()
    assert info == "text", f"the listing's fence is ```{info}: a reference, not a script"
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) >= 10
    assert all(line.startswith("run-proof ") for line in lines), lines


@pytest.mark.parametrize("line", listed_lines(), ids=lambda line: line.commands[0])
def test_each_listed_command_exists_and_its_help_names_the_options_shown(
    line: ListedLine,
) -> None:
    helps = {command: help_text(command) for command in line.commands}
    for command, output in helps.items():
        missing = [option for option in line.options if not names(output, option)]
        assert not missing, f"run-proof {command} --help does not name {missing}: {line.text!r}"
    for option in line.comment_options:
        assert any(names(output, option) for output in helps.values()), (
            f"{option} (in the comment of {line.text!r}) is an option of none of {list(helps)}"
        )


def test_every_command_of_the_cli_is_listed() -> None:
    listed = {command for line in listed_lines() for command in line.commands}
    unlisted = cli_commands() - listed
    assert not unlisted, f"CLI commands missing from README's '## The command line': {unlisted}"
    assert listed <= cli_commands(), listed - cli_commands()


def test_the_parser_reads_alternatives_options_and_comments() -> None:
    """The parse the checks above rely on, on lines of the listing's shape."""
    line = parse("run-proof db start | stop | url # the server (url --reveal prints it)")
    assert line.commands == ("db start", "db stop", "db url")
    assert line.options == () and line.comment_options == ("--reveal",)
    line = parse("run-proof export --tenant-id T --run-id R [--out FILE [--force]]   # x")
    assert line.commands == ("export",)
    assert line.options == ("--tenant-id", "--run-id", "--out", "--force")
    assert parse("run-proof vectors PATH").commands == ("vectors",)
    assert not names("--out-dir DIR", "--out") and names("[--out FILE]", "--out")
