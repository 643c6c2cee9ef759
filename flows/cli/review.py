"""``vitrine review CATALOG_DIR``: serve the review page, export it, or list pending edit requests.

Exit codes (`flows.cli.common`): 0 success, 2 bad usage or input (including a port already in use).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from flows.cli.common import EXIT_OK, REVIEW_HOST, REVIEW_PORT, catalog_problem, error
from pipelines.errors import InputError


def _default_reviewer() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return None


def cmd_review(args: argparse.Namespace) -> int:
    from pipelines.catalog.review import pending_edit_requests

    catalog = Path(args.catalog_dir)
    problem = catalog_problem(catalog)
    if problem:
        return error(problem)

    if args.list_edits:
        for request in pending_edit_requests(catalog):
            print(json.dumps(request.to_json(), ensure_ascii=False))
        return EXIT_OK

    if args.export:
        from pipelines.review_ui.page import export_static

        index = export_static(catalog, Path(args.export))
        print(f"exported: {index}")
        return EXIT_OK

    from pipelines.review_ui.server import ReviewServer

    try:
        server = ReviewServer(catalog, args.host, args.port, reviewer=args.reviewer or _default_reviewer(),
                              products_dir=args.products, allowed_hosts=tuple(args.allow_host or ()))
    except InputError as exc:
        return error(str(exc))
    except OSError as exc:
        return error(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    print(f"Reviewing {catalog.resolve()} at {server.url} (Ctrl-C to stop)", flush=True)
    if server.products is None:
        print("vitrine: note: the products folder is unknown (no batch report); pass --products PRODUCTS_DIR "
              "to save painted masks", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``review`` command."""
    r = subparsers.add_parser(
        "review", help="review a catalog in the browser: approve, reject, or request edits per output",
        description="Serve a review page for CATALOG_DIR on 127.0.0.1 (decisions go to each manifest and to "
                    "CATALOG_DIR/_review/decisions.jsonl), or export a read-only page with --export.",
    )
    r.add_argument("catalog_dir", metavar="CATALOG_DIR")
    r.add_argument("--host", default=REVIEW_HOST, help=f"address to bind (default: {REVIEW_HOST})")
    r.add_argument("--port", type=int, default=REVIEW_PORT, help=f"port; 0 picks a free one (default: {REVIEW_PORT})")
    r.add_argument("--allow-host", action="append", default=None, metavar="NAME[:PORT]",
                   help="also accept this host name in Host/Origin headers (repeatable), e.g. the machine's name "
                        "with --host 0.0.0.0; loopback names are always accepted, nothing else is")
    r.add_argument("--reviewer", default=None, metavar="NAME", help="name recorded with decisions (default: $USER)")
    r.add_argument("--export", default=None, metavar="DIR",
                   help="write a read-only DIR/index.html that opens from disk, then exit")
    r.add_argument("--products", default=None, metavar="PRODUCTS_DIR",
                   help="products folder the mask brush writes masks/product.png into (default: the one "
                        "recorded in the latest batch report)")
    r.add_argument("--list-edits", action="store_true",
                   help="print the pending edit requests as JSON lines, then exit")
    r.set_defaults(func=cmd_review)
