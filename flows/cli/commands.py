"""The core ``vitrine`` commands: ``run``, ``demo``, ``segment``, ``pose``, ``verify``, ``samples``, ``models``
and ``dev`` (docs/cli.md). Exit codes are `flows.cli.common`'s: 1 means at least one SKU (or entry) failed.

The library is imported inside each command, so that building the parser stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from flows.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error, model_root_of, not_a_sku_failure, printable
from pipelines.catalog.folder import prepare_catalog_dir
from pipelines.errors import InputError, VitrineError
from pipelines.models.inventory import model_inventory


# -- run / demo ----------------------------------------------------------------------------------------
def _engine_error(exc: Exception, engine: str) -> str:
    """The one-line message for an engine that cannot be used: what is missing, where to get it, what to use."""
    msg = str(exc).removeprefix("[engine]: ")
    if engine in ("auto", "classic"):
        return msg
    return (f"{msg}. Get the weights: put them under --model-root DIR as DIR/<org>/<name>/ or in the Hugging Face "
            f"cache (`vitrine models` lists what is found; docs/generation.md); or run with --engine classic, "
            f"which needs no weights")


def catalog_location(text: str) -> str | Path:
    """``--catalog`` as the library takes it: an fsspec URL (``s3://bucket/catalog``, ``memory://c``) stays a
    string (a `Path` would fold ``s3://b/c`` into the local folder ``s3:/b/c``), anything else is a `Path`."""
    from pipelines.catalog.publish import is_url

    return text if is_url(text) else Path(text)


def _check_catalog_url(catalog: str | Path, settings) -> None:
    """Open a catalog URL's file system once, before any SKU work: a missing fsspec backend (``s3fs``) or a bad
    URL is the library's `InputError` (exit 2, one line), not one failure per SKU. A local path passes."""
    from pipelines.catalog.publish import RemoteCatalog, is_url

    if is_url(catalog):
        RemoteCatalog(str(catalog), dict(settings.storage_options))


def _run_batch(products: Path, catalog: str | Path, engine: str, settings, force: bool,
               progress: bool, identity: str | None = None, commercial: bool = False,
               use_prefect: bool = False) -> int:
    from tqdm import tqdm

    from flows.local_batch import engine_for, prefect_api_configured
    from pipelines.product import check_products_layout, discover_products

    for warning in check_products_layout(products):  # raises InputError (exit 2) for a folder without SKUs
        print(f"vitrine: warning: {warning}", file=sys.stderr)
    problem = prepare_catalog_dir(catalog)  # a URL is left alone here ...
    if problem:
        return error(f"--catalog {catalog}: {problem}")
    _check_catalog_url(catalog, settings)  # ... and opened here
    try:  # fail fast, before any Prefect start-up or SKU work, when the engine cannot be used
        engine_for(engine, settings)
    except InputError as exc:
        return error(_engine_error(exc, engine))
    goods, bads = discover_products(products)
    total = len(goods) + len(bads)
    bar = tqdm(total=total, unit="sku", desc="catalog", disable=not progress, file=sys.stderr)

    def hook(entry):
        bar.set_postfix_str(f"{printable(entry['sku'])}: {entry['status']}")
        bar.update(1)

    batch = {k: v for k, v in (("identity", identity), ("commercial", commercial)) if v}  # the batch-wide identity preset and commercial flag
    try:
        if use_prefect or prefect_api_configured():  # the Prefect flow: task runs, artifacts, the UI
            result = _run_prefect_batch(products, catalog, engine, settings, force, hook, batch)
        else:  # no Prefect API configured: the library directly, no server start-up (flows/local_batch.py)
            from flows.local_batch import run_local_batch

            result = run_local_batch(str(products), str(catalog), engine=engine, model_root=model_root_of(settings),
                                     force=force, on_entry=hook, settings=settings, **batch)
    finally:
        bar.close()
    counts = result["counts"]
    print(f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped")
    errors = result.get("errors") or {}
    for sku in result["failed"]:  # one line per failed SKU, with why (the library's log lines are muted)
        why = errors.get(sku)
        print(f"failed: {printable(sku)}" + (f": {printable(why)}" if why else ""), file=sys.stderr)
    for sku, notes in (result.get("warnings") or {}).items():  # e.g. a .heic photo that was not read
        for note in notes:
            print(f"warning: {printable(sku)}: {printable(note)}", file=sys.stderr)
    if result.get("report_path") is None:
        return error(f"could not write the batch report: {result.get('report_error', 'unknown error')}")
    print(f"report: {result['report_path']}")
    return EXIT_FAILED if counts["failed"] else EXIT_OK


def _run_prefect_batch(products: Path, catalog: str | Path, engine: str, settings, force: bool,
                       hook, batch: dict) -> dict:
    """The batch as the Prefect flow `flows.catalog_batch.catalog_batch` (``--prefect`` or a configured API)."""
    from flows.prefect_local import ephemeral_server_dies_with_us

    ephemeral_server_dies_with_us()  # an embedded API server must not outlive a killed CLI
    from flows import catalog_batch as cb

    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):  # Prefect's console: failures once
        for handler in logging.getLogger(name).handlers:
            if "console" in type(handler).__name__.lower() and not_a_sku_failure not in handler.filters:
                handler.addFilter(not_a_sku_failure)

    cb.PROGRESS_HOOKS.append(hook)
    try:
        config = str(settings.config_file) if settings.config_file is not None else None
        return cb.catalog_batch(str(products), str(catalog), engine=engine, model_root=model_root_of(settings), force=force,
                                config=config, max_upscale=settings.max_upscale, **batch)
    finally:
        cb.PROGRESS_HOOKS.remove(hook)


def cmd_run(args: argparse.Namespace) -> int:
    products = Path(args.products_dir)
    if not products.is_dir():
        return error(f"{products}: not a directory")
    from pipelines.catalog.store import check_separate_trees

    catalog = catalog_location(args.catalog)
    if isinstance(catalog, Path):  # an InputError: exit 2 before anything is touched (a URL cannot overlap)
        check_separate_trees(products, catalog)
    return _run_batch(products, catalog, args.engine, args.settings, args.force, not args.no_progress,
                      args.identity, args.commercial, use_prefect=args.prefect)


def cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.catalog.store import check_separate_trees
    from pipelines.samples import build_sample_products

    products = Path(args.products)
    catalog = catalog_location(args.catalog)
    if isinstance(catalog, Path):
        check_separate_trees(products, catalog)
    build_sample_products(products)
    print(f"sample products: {products}")
    return _run_batch(products, catalog, args.engine, args.settings, args.force, not args.no_progress,
                      use_prefect=args.prefect)


# -- segment / pose -----------------------------------------------------------------------------------
def _pairs(src: Path, out: Path, suffix: str) -> list[tuple[Path, Path]]:
    """(input image, output file) pairs: one for a file; one per image (same stem) for a folder."""
    from pipelines.imageio import IMAGE_SUFFIXES

    if src.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        images = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                        and not p.name.startswith("."))
        return [(p, out / f"{p.stem}{suffix}") for p in images]
    return [(src, out)]


def cmd_segment(args: argparse.Namespace) -> int:
    from pipelines.imageio import load_image, save_mask
    from pipelines.segmentation.api import segment_image, segment_image_detailed
    from pipelines.segmentation.rescale import mask_to_source_size, report_to_source_pixels

    src = Path(args.image)
    if not src.exists():
        return error(f"{src}: no such file or directory")
    # Backend options, passed only when given (the classic engine takes none).
    options = {k: v for k, v in (
        ("box_threshold", args.box_threshold), ("text_threshold", args.text_threshold), ("policy", args.policy),
        ("edges", args.edges), ("exclude", args.exclude), ("detector", args.detector), ("sam", args.sam),
        ("device", args.device), ("retry", False if args.no_retry else None),
        ("person_box_cover", None if args.keep_person_box else args.person_box_cover),
    ) if v is not None or (k == "person_box_cover" and args.keep_person_box)}
    failed = 0
    for image_path, out_path in _pairs(src, Path(args.out), ".png"):
        try:
            img = load_image(image_path)
            if args.json:
                mask, report = segment_image_detailed(img.rgb, args.prompt, engine=args.engine,
                                                      model_root=model_root_of(args.settings), threshold=args.threshold,
                                                      **options)
            else:
                mask = segment_image(img.rgb, args.prompt, engine=args.engine, model_root=model_root_of(args.settings),
                                     threshold=args.threshold, **options)
            mask = mask_to_source_size(mask, img.source_size)  # the segmenter may have seen a downscaled copy
            save_mask(out_path, mask)
            if args.json:  # one JSON object per image (docs/segmentation.md, "vitrine segment --json")
                line = {"image": str(image_path), "mask": str(out_path), "size": list(img.source_size),
                        **report_to_source_pixels(report, img.scale)}
                print(json.dumps(line, ensure_ascii=False), flush=True)
            else:
                print(f"{out_path}\t{(mask > 0).mean():.4f}")
        except VitrineError as exc:
            error(str(exc))
            failed += 1
    return EXIT_USAGE if failed else EXIT_OK


def cmd_pose(args: argparse.Namespace) -> int:
    from pipelines.controls.pose import get_pose_estimator, render_openpose
    from pipelines.imageio import atomic_write_json, load_image, save_image

    src = Path(args.image)
    if not src.exists():
        return error(f"{src}: no such file or directory")
    json_pairs = _pairs(src, Path(args.json), ".json")
    skel_dir = Path(args.out) if args.out else None
    if skel_dir is not None and src.is_dir():
        skel_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    estimator = get_pose_estimator()
    for image_path, json_path in json_pairs:
        try:
            img = load_image(image_path)
            pose = estimator(img.rgb)
            data = pose.to_json()
            atomic_write_json(json_path, data)
            if skel_dir is not None:
                skel_path = skel_dir / f"{image_path.stem}.png" if src.is_dir() else skel_dir
                save_image(skel_path, render_openpose(pose))
            print(f"{json_path}\t{int((pose.keypoints[:, 2] > 0.5).sum())}/17 keypoints")
        except VitrineError as exc:
            error(str(exc))
            failed += 1
    return EXIT_USAGE if failed else EXIT_OK


# -- verify / samples ------------------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace) -> int:
    from pipelines.catalog.entries import manifest_dirs, unapproved_flags
    from pipelines.catalog.verify import entry_file_problems, verify_entry
    from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest, validate_manifest

    catalog = Path(args.catalog_dir)
    entries = manifest_dirs(catalog)
    if not entries:
        return error(f"{catalog}: no catalog entries found")
    bad = 0
    for d in entries:
        try:
            manifest = read_manifest(d / MANIFEST_NAME)
            validate_manifest(manifest, path=d / MANIFEST_NAME)
            problems = entry_file_problems(d, manifest)  # every listed file, exports and work files included
            results = verify_entry(d) if not problems else []
        except Exception as exc:
            print(f"{d.name}\tINVALID\t{exc}")
            bad += 1
            continue
        if problems:
            bad += 1
            print(f"{d.name}\tCHANGED\t" + "; ".join(problems))
            continue
        ok = bool(results) and all(r["ok"] for r in results)
        bad += not ok
        print(f"{d.name}\t{'ok' if ok else 'CHANGED'}\t" + ", ".join(
            f"{r['file']}={r['identical']}/{r['pixels']}" for r in results))
        if args.strict:  # one line per quality flag of an output no reviewer approved
            flags = unapproved_flags(manifest)
            for file, f in flags:
                print(f"{d.name}\tFLAGGED\t{file}: {f.get('flag')}: {f.get('message')}")
            bad += bool(flags)
    return EXIT_FAILED if bad else EXIT_OK


def cmd_samples(args: argparse.Namespace) -> int:
    from pipelines.samples import build_sample_products

    for folder in build_sample_products(Path(args.dest)):
        print(folder)
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    if getattr(args, "plan", False):
        return cmd_models_plan(args)
    rows = model_inventory(model_root_of(args.settings))
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no models registered")
    for r in rows:
        where = f"{r['source']}: {r['found']}" if r["found"] else "not found"
        use = "commercial use ok" if r["commercial"] else "NON-COMMERCIAL"
        print(f"{r['key']:<48} {r['family']:<16} {r['licence']:<28} {use:<18} {where}")
    return EXIT_OK


def cmd_models_plan(args: argparse.Namespace) -> int:
    """``vitrine models --plan``: the GPU memory plan of an engine's models (sizes from weight headers)."""
    from pipelines.generation.memplan import plan_for_engine, plan_to_text

    try:
        plan = plan_for_engine(args.engine, model_root_of(args.settings), gpu_memory_gb=args.gpu_memory,
                               settings=args.settings.generation)
    except VitrineError as exc:
        return error(str(exc))
    if args.json:
        print(json.dumps(plan.to_json(), indent=2))
    else:
        print(plan_to_text(plan))
    return EXIT_OK


def cmd_tiny_models(args: argparse.Namespace) -> int:
    from pipelines.dev_models.tiny import build_tiny_models

    written = build_tiny_models(Path(args.dest), args.family)
    for family, ids in written.items():
        for mid in ids:
            print(f"{family}\t{Path(args.dest) / mid}")
    if not written:
        print("no tiny-model families registered")
    return EXIT_OK


def cmd_real_arch_models(args: argparse.Namespace) -> int:
    from pipelines.dev_models.realarch import build_real_arch_models

    written = build_real_arch_models(Path(args.dest), args.family)
    for family, ids in written.items():
        for mid in ids:
            print(f"{family}\t{Path(args.dest) / mid}")
    return EXIT_OK


# -- registration ---------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    """Add ``run``, ``segment``, ``pose``, ``demo``, ``verify``, ``samples``, ``models`` and ``dev``."""
    from pipelines.engines.registry import engine_names
    from pipelines.segmentation.api import segmenter_names

    engines, segment_engines = engine_names(), segmenter_names()
    r = sub.add_parser("run", help="render every SKU of a products folder into a catalog")
    r.add_argument("products_dir", metavar="PRODUCTS_DIR")
    r.add_argument("--catalog", required=True, metavar="DIR|URL",
                   help="catalog root (created if missing), or an fsspec URL such as s3://bucket/catalog")
    r.add_argument("--engine", default="auto", choices=engines, help="default: auto")
    r.add_argument("--model-root", default=None, metavar="DIR", help="model weights laid out as DIR/<org>/<name>/")
    r.add_argument("--force", action="store_true", help="redo SKUs even when unchanged")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--identity", default=None, metavar="NAME|FILE",
                   help="model identity preset (seed, prompt, reference face) for every SKU: a YAML file, or a name "
                        "in $VITRINE_IDENTITIES, PRODUCTS_DIR/_identities/ or the catalog's _identities/")
    r.add_argument("--commercial", action="store_true",
                   help="the whole batch is for commercial use: non-commercial models are refused")
    r.add_argument("--max-upscale", type=float, default=None, metavar="X",
                   help="a SKU fails, naming its photo and size, when an output would enlarge the photo more than "
                        "X times (>= 1; default $VITRINE_MAX_UPSCALE or 8); outputs above 2x are flagged 'upscaled'")
    r.add_argument("--prefect", action="store_true",
                   help="run as the Prefect flow even without PREFECT_API_URL (default: the Prefect flow only when "
                        "an API is configured, else the library directly, which starts in about a second)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("segment", help="write a 0/255 PNG mask of what a text prompt names")
    s.add_argument("image", metavar="IMAGE", help="an image, or a folder of images")
    s.add_argument("--prompt", required=True, metavar="TEXT", help="e.g. person, garment, product")
    s.add_argument("--out", required=True, metavar="MASK.png", help="mask file (a folder when IMAGE is one)")
    s.add_argument("--engine", default="classic", choices=segment_engines, help="default: classic")
    s.add_argument("--model-root", default=None, metavar="DIR")
    s.add_argument("--threshold", type=float, default=0.5, help="soft-mask threshold in [0, 1] (default 0.5)")
    s.add_argument("--json", action="store_true",
                   help="print one JSON object per image: boxes, phrases, scores, attempts, thresholds used")
    gs = s.add_argument_group("grounded-sam options (docs/segmentation.md)")
    gs.add_argument("--box-threshold", type=float, default=None, metavar="X",
                    help="keep a box when its best prompt-token score is > X (default 0.35, or the preset's)")
    gs.add_argument("--text-threshold", type=float, default=None, metavar="X",
                    help="label a box with a phrase when one of its tokens scores > X; unlabelled boxes are "
                         "dropped (default 0.25)")
    gs.add_argument("--policy", default=None, choices=("merge", "best", "largest"),
                    help="several instances: unite them, keep the best box, or the largest mask (default merge)")
    gs.add_argument("--edges", default=None, choices=("hard", "feather", "matte"), help="default hard")
    gs.add_argument("--exclude", action="append", default=None, metavar="TEXT",
                    help="subtract what this prompt or preset names, e.g. hair, hands (repeatable)")
    gs.add_argument("--no-retry", action="store_true", help="no retry with relaxed thresholds when nothing is found")
    gs.add_argument("--person-box-cover", type=float, default=None, metavar="X",
                    help="garment prompts: drop boxes covering >= X of the person's box (default 0.9)")
    gs.add_argument("--keep-person-box", action="store_true",
                    help="garment prompts: keep boxes that cover the whole person")
    gs.add_argument("--detector", default=None, metavar="MODEL_ID", help="GroundingDINO repo id (default: best found)")
    gs.add_argument("--sam", default=None, metavar="MODEL_ID|FILE.pth",
                    help="Segment Anything repo id or sam_vit_*.pth file (default: best found)")
    gs.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    s.set_defaults(func=cmd_segment)

    q = sub.add_parser("pose", help="write COCO-17 keypoints as JSON (and an OpenPose skeleton image)")
    q.add_argument("image", metavar="IMAGE", help="an image, or a folder of images")
    q.add_argument("--json", required=True, metavar="OUT.json", help="JSON file (a folder when IMAGE is one)")
    q.add_argument("--out", default=None, metavar="SKELETON.png", help="skeleton image (a folder when IMAGE is one)")
    q.set_defaults(func=cmd_pose)

    d = sub.add_parser("demo", help="build the sample products, then run the batch on them")
    d.add_argument("--catalog", default="catalog", metavar="DIR|URL", help="default: ./catalog")
    d.add_argument("--products", default="products-demo", metavar="DIR", help="default: ./products-demo")
    d.add_argument("--engine", default="auto", choices=engines)
    d.add_argument("--force", action="store_true")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--max-upscale", type=float, default=None, metavar="X", help="see run --max-upscale")
    d.add_argument("--prefect", action="store_true", help="run as the Prefect flow (see run --prefect)")
    d.set_defaults(func=cmd_demo)

    v = sub.add_parser("verify", help="re-check every catalog entry: schema, and product pixels preserved")
    v.add_argument("catalog_dir", metavar="CATALOG_DIR")
    v.add_argument("--strict", action="store_true",
                   help="also fail on outputs with quality flags (needs-attention) that no reviewer approved")
    v.set_defaults(func=cmd_verify)

    sm = sub.add_parser("samples", help="write the sample product folders")
    sm.add_argument("dest", metavar="DIR")
    sm.set_defaults(func=cmd_samples)

    m = sub.add_parser("models", help="list known models, where each was found, and its licence")
    m.add_argument("--model-root", default=None, metavar="DIR")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.add_argument("--plan", action="store_true",
                   help="print the GPU memory plan of an engine's models (which stay on the GPU, which are offloaded)")
    m.add_argument("--engine", default="auto", choices=("auto", "flux", "sdxl"), help="with --plan: whose models")
    m.add_argument("--gpu-memory", type=float, default=None, metavar="GB",
                   help="with --plan: plan for a GPU with this much memory (default: this machine's free GPU memory)")
    m.set_defaults(func=cmd_models)

    dev = sub.add_parser("dev", help="developer tools")
    devsub = dev.add_subparsers(dest="dev_command", required=True, metavar="DEV_COMMAND")
    t = devsub.add_parser("tiny-models", help="write tiny random models in the real repo layouts under DIR")
    t.add_argument("dest", metavar="DIR")
    t.add_argument("--family", action="append", default=None, help="only this family (repeatable)")
    t.set_defaults(func=cmd_tiny_models)
    ra = devsub.add_parser("real-arch-models", help="write random models at real width and minimal depth, from "
                                                    "the published configs, in the real repo layouts under DIR")
    ra.add_argument("dest", metavar="DIR")
    ra.add_argument("--family", action="append", default=None, choices=("flux", "sdxl", "segmentation"),
                    help="only this family (repeatable)")
    ra.set_defaults(func=cmd_real_arch_models)
