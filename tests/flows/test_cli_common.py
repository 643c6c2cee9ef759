"""`flows.cli.common`: the one error line, the exit codes every command shares, and that the CLI keeps one copy
of each helper."""

from __future__ import annotations

import argparse
import ast
import errno
import re
from pathlib import Path

import pytest

from flows.cli import build_parser, common
from pipelines.errors import InputError

CLI = Path(__file__).resolve().parents[2] / "flows" / "cli"


def test_error_prints_one_line_and_returns_the_usage_code(capsys):
    assert common.error("bad input") == common.EXIT_USAGE == 2
    assert capsys.readouterr().err == "vitrine: error: bad input\n"


def test_printable_escapes_control_characters():
    assert common.printable("a\tb\x1b[31mc") == "a\\tb\\x1b[31mc"
    assert common.printable("tee-navy é") == "tee-navy é"
    assert common.printable(3) == "3"


def _raising(exc):
    def command(_args):
        raise exc
    return command


@pytest.mark.parametrize(("exc", "code", "message"), [
    (InputError("no photos", "/p/tee"), 2, "vitrine: error: /p/tee: no photos\n"),
    (OSError(errno.ENOSPC, "No space left on device", "/cat/x.png"), 2, "no space left"),
    (KeyboardInterrupt(), 130, ""),
])
def test_run_command_turns_shared_errors_into_one_line_and_a_code(exc, code, message, capsys):
    assert common.run_command(_raising(exc), argparse.Namespace()) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == (1 if message else 0) and "Traceback" not in err


def test_run_command_returns_the_command_code():
    assert common.run_command(lambda args: args.code, argparse.Namespace(code=1)) == 1


def test_an_unexpected_error_is_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        common.run_command(_raising(ZeroDivisionError()), argparse.Namespace())


def test_every_command_is_registered_in_help_order():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == ["run", "segment", "pose", "demo", "verify", "samples", "models", "dev", "review",
                                 "deploy", "serve", "worker", "edit"]


def test_the_cli_defines_each_shared_helper_once_and_registers_by_explicit_import():
    flows = CLI.parent
    defined: dict[str, list[str]] = {}
    for path in sorted(flows.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.Assign):
                names = [node.name] if isinstance(node, ast.FunctionDef) else [
                    t.id for t in ast.walk(node) if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)]
                for name in names:
                    defined.setdefault(name, []).append(str(path.relative_to(flows)))
    for name in ("error", "_error", "printable", "_printable", "EXIT_USAGE", "EXIT_OK", "REVIEW_PORT",
                 "DEFAULT_PORT"):
        assert len(defined.get(name, [])) <= 1, (name, defined[name])
    assert defined["error"] == defined["printable"] == ["cli/common.py"]
    for path in CLI.glob("*.py"):
        assert not re.search(r"\bimportlib\b", path.read_text()), path
