"""``vitrine edit CATALOG_DIR``: Kontext instruction edits of catalog outputs, as new versions.

Runs the Prefect edit flow (`flows.edit_flow`). Exit codes (`flows.cli.common`): 0 every edit applied (or
nothing to do), 1 at least one edit failed, 2 bad usage or input (no catalog, unknown SKU or output, identity
preset not found).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.cli.common import EXIT_FAILED, EXIT_OK, catalog_problem, error, model_root_of, printable
from pipelines.errors import InputError
from pipelines.models.location import ModelNotFoundError, locate


def cmd_edit(args: argparse.Namespace) -> int:
    catalog = Path(args.catalog_dir)
    problem = catalog_problem(catalog)
    if problem:
        return error(problem)
    if args.instruction is not None and not args.instruction.strip():
        return error("--instruction is empty")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        return error(f"--seed must be in [0, 2**32 - 1], got {args.seed}")

    try:  # fail fast, once, before Prefect starts, when FLUX.1-Kontext is not there (the flow checks it too)
        _check_kontext(catalog, args)
    except (InputError, ModelNotFoundError) as exc:
        return error(str(exc))

    from flows import edit_flow

    def show(entry):
        where = f"{printable(entry['sku'])}/{printable(entry['output'])}"
        if entry["status"] == "applied":
            print(f"{where} -> {printable(entry['new_output'])}", flush=True)
        else:
            print(f"failed: {where}: {printable(entry['error'])}", file=sys.stderr, flush=True)

    edit_flow.PROGRESS_HOOKS.append(show)
    try:
        result = edit_flow.catalog_edit(
            str(catalog), instruction=args.instruction, skus=args.sku or None, outputs=args.output or None,
            model_root=model_root_of(args.settings), identity=args.identity, commercial=args.commercial, garment=args.garment,
            seed=args.seed, config=str(args.settings.config_file) if args.settings.config_file else None)
    except (InputError, ModelNotFoundError) as exc:
        return error(str(exc))
    finally:
        edit_flow.PROGRESS_HOOKS.remove(show)
    counts = result["counts"]
    if not result["entries"]:
        print("nothing to edit" + ("" if args.instruction else " (no pending edit requests)"))
    print(f"{counts['applied']} applied, {counts['failed']} failed")
    print(f"report: {result['report_path']}")
    return EXIT_FAILED if counts["failed"] else EXIT_OK


def _check_kontext(catalog: Path, args: argparse.Namespace) -> None:
    """Raise `ModelNotFoundError` when there is something to edit and FLUX.1-Kontext-dev is not found."""
    if args.commercial:  # a commercial run refuses Kontext-dev per edit, with its own message
        return
    from pipelines.catalog.edit_batch import plan_edits

    jobs = plan_edits(str(catalog), instruction=args.instruction, skus=args.sku or None, outputs=args.output or None)
    if not jobs:
        return
    from pipelines.catalog.edits import FLUX_KONTEXT
    from pipelines.models.profiles import get_profile

    profile = get_profile(FLUX_KONTEXT)
    locate(profile.id, model_root_of(args.settings), required_files=profile.required_files,
           revision=profile.revision)



def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``edit`` command."""
    e = subparsers.add_parser(
        "edit", help="apply FLUX.1 Kontext edits to catalog outputs as new versions (originals kept)",
        description="Edit catalog outputs with FLUX.1 Kontext. With --instruction, every chosen output (default: "
                    "the newest version of each lifestyle, try-on and edited output of every SKU); without it, "
                    "the pending edit requests of `vitrine review`. Each edit is a new output "
                    "<stem>.edit-N.png linked to its parent in the manifest; the original is kept. Garment pixels "
                    "are pasted back unless the instruction targets the garment (docs/tryon-and-edits.md).",
    )
    e.add_argument("catalog_dir", metavar="CATALOG_DIR")
    e.add_argument("--instruction", default=None, metavar="TEXT",
                   help='the edit, e.g. "replace the floor with white marble" (default: the review requests)')
    e.add_argument("--sku", action="extend", nargs="+", default=None, metavar="SKU", help="only these SKUs")
    e.add_argument("--output", action="extend", nargs="+", default=None, metavar="FILE",
                   help="only these outputs, e.g. main.png (white-background images are edited only when named)")
    e.add_argument("--model-root", default=None, metavar="DIR",
                   help="model weights laid out as DIR/<org>/<name>/ (needs black-forest-labs/FLUX.1-Kontext-dev)")
    e.add_argument("--identity", default=None, metavar="NAME|FILE",
                   help="model identity preset (seed, prompt, reference face): a YAML file, or a name in "
                        "$VITRINE_IDENTITIES or CATALOG_DIR/_identities/")
    e.add_argument("--commercial", action="store_true",
                   help="the batch is for commercial use: non-commercial models (Kontext-dev) are refused")
    e.add_argument("--garment", default="auto", choices=("auto", "keep", "release"),
                   help="paste the garment's pixels back: unless the instruction targets it (auto), always, never")
    e.add_argument("--seed", type=int, default=None, help="seed (default: the identity's, else each output's)")
    e.set_defaults(func=cmd_edit)
