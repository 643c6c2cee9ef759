"""The ``vitrine`` command line. Its commands, options, outputs and exit codes are contracts (docs/cli.md):
scripts depend on them.

`main` is the entry point (``vitrine = "flows.cli:main"``; ``python -m flows.cli`` runs it too). The exit codes
and the one-line error are `flows.cli.common`'s; each command group is a module with a ``register(subparsers)``.
"""

from flows.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
