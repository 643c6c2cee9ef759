"""The ``vitrine`` entry point: the parser (global options, then each command group's ``register``) and `main`.

Command groups: `flows.cli.commands` (run, segment, pose, demo, verify, samples, models, dev),
`flows.cli.review` (review), `flows.cli.ops` (deploy, serve, worker), `flows.cli.edit` (edit).
"""

from __future__ import annotations

import argparse
import logging
import warnings

from flows.cli import commands, edit, ops, review
from flows.cli.common import error, not_a_sku_failure, run_command
from pipelines import __version__
from pipelines.errors import InputError
from pipelines.native_logs import keep_native_logs, silenced_process_stderr
from pipelines.settings import configure_process_env, load_settings

#: Commands whose native-library stderr lines are silenced (see `main`).
QUIET_NATIVE_COMMANDS = frozenset({"run", "demo", "segment", "pose", "edit", "verify", "samples"})


def build_parser() -> argparse.ArgumentParser:
    """The ``vitrine`` parser; the order of the groups is the order of ``vitrine --help``."""
    p = argparse.ArgumentParser(prog="vitrine", description="Product photos in, catalog imagery out.")
    p.add_argument("--version", action="version", version=f"vitrine {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--config", dest="settings_file", default=None, metavar="FILE",
                   help="settings file (TOML; default $VITRINE_CONFIG): model root, VITRINE_GEN_* generation "
                        "settings, storage... (docs/configuration.md); options and environment variables win")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.register(sub)
    review.register(sub)
    ops.register(sub)
    edit.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    configure_process_env()  # native log levels, Prefect's embedded-server defaults: before mediapipe/Prefect
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        # Prefect's run logs still reach its API (and the UI); the terminal shows the progress bar.
        configure_process_env(quiet_prefect_logs=True)
        warnings.filterwarnings("ignore", category=UserWarning, module="google.protobuf")
    problem = _load_settings(args)
    if problem:
        return error(problem)
    # Native libraries (mediapipe/TFLite, absl, XNNPACK) write to fd 2 directly: without -v, fd 2 goes to
    # /dev/null while Python's own messages keep the terminal (pipelines/native_logs.py).
    # Only commands that run models in this process: `worker`/`serve` exec or spawn long-lived processes
    # that inherit fd 2, and their logs must reach the journal.
    with silenced_process_stderr(enabled=not args.verbose and args.command in QUIET_NATIVE_COMMANDS):
        _configure_logging(args.verbose)
        return run_command(args.func, args)


def _load_settings(args: argparse.Namespace) -> str | None:
    """Build ``args.settings`` (`pipelines.settings.VitrineSettings`: flags > environment > config file), once
    per command; commands read the model root and the rest from it. Returns the error message, if any."""
    try:
        args.settings = load_settings({"model_root": getattr(args, "model_root", None),
                                       "max_upscale": getattr(args, "max_upscale", None)},
                                      config_file=args.settings_file)
    except InputError as exc:
        return str(exc)
    keep_native_logs(args.settings.native_logs)
    return None


def _configure_logging(verbose: bool) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        for handler in root.handlers:
            if handler not in before:  # ours: each SKU failure is printed once, by the command itself
                handler.addFilter(not_a_sku_failure)
