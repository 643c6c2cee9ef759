"""Segmentation quality: IoU of an engine's masks against labelled masks, beside raw mediapipe.

Usage::

    python bench/segmentation_quality.py IMAGES_DIR MASKS_DIR [IMAGES_DIR2 MASKS_DIR2 ...] \\
        --prompt person [--engine classic] [--out results.json] [--no-baseline] \\
        [--classes MANIFEST.md] [--split all|tune|heldout] [--subject]

For every image (``*.jpg|jpeg|png|webp``) in each IMAGES_DIR, the mask is ``MASKS_DIR/<stem>.png`` or
``MASKS_DIR/<stem>_mask.png`` (any nonzero pixel = foreground). Masks are never resized: a mask whose
size differs from its image is reported as an error for that file and left out of the mean. Several
IMAGES_DIR MASKS_DIR pairs may be given; the mean is over all images.

Images are loaded with PIL, EXIF orientation applied, converted to RGB. The engine's mask comes from
``pipelines.segmentation.api.segment_image(rgb, prompt, engine=...)``. For the prompt ``person`` the raw
mediapipe masks are scored beside it (``baseline_selfie``: the general selfie model; ``baseline_pose``:
the pose model's mask of the one person it finds), both thresholded at 0.5.

Per-class figures: with ``--classes MANIFEST.md`` (a Markdown table or CSV with a ``stem`` column, e.g.
``shop_garments/MANIFEST.md``; found automatically as ``IMAGES_DIR/../MANIFEST.md`` when that has a
``stem`` column) every image gets the classes of the columns named by ``--class-columns`` (default
``garment colour,backdrop``), and mean / p10 / min IoU and the count below ``--low`` (0.6) are printed
per class. ``--split tune|heldout`` keeps one deterministic half of the images (by CRC32 of the stem),
so that an algorithm tuned on ``tune`` can be reported honestly on ``heldout``; ``all`` (the default)
scores every image and prints both halves' figures as well.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def load_rgb(path: Path) -> np.ndarray:
    """Read an image as HxWx3 ``uint8`` RGB, EXIF orientation applied."""
    with Image.open(path) as im:
        return np.array(ImageOps.exif_transpose(im).convert("RGB"))


def load_mask(path: Path) -> np.ndarray:
    """Read a mask as HxW ``bool`` (any nonzero channel = foreground)."""
    with Image.open(path) as im:
        arr = np.array(im)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    return arr > 0


def find_mask(masks_dir: Path, stem: str) -> Path | None:
    """``masks_dir/<stem>.png`` or ``masks_dir/<stem>_mask.png``, whichever exists."""
    for name in (f"{stem}.png", f"{stem}_mask.png"):
        if (masks_dir / name).is_file():
            return masks_dir / name
    return None


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two HxW ``bool`` masks; 1.0 when both are empty."""
    union = np.logical_or(pred, truth).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, truth).sum() / union)


def split_of(stem: str) -> str:
    """The deterministic half an image belongs to: ``tune`` or ``heldout`` (CRC32 of its stem)."""
    return "tune" if zlib.crc32(stem.encode("utf-8")) % 2 == 0 else "heldout"


def read_classes(path: Path) -> dict[str, dict[str, str]]:
    """Read ``stem -> {column: value}`` from a Markdown table or a CSV file with a ``stem`` column.

    Raises:
        ValueError: no ``stem`` column found in ``path``.
    """
    text = path.read_text(encoding="utf-8")
    rows: list[list[str]] = []
    if path.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r]
    else:
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("|") and not set(line) <= set("|-: "):
                rows.append([c.strip() for c in line.strip("|").split("|")])
    header_at = next((i for i, r in enumerate(rows) if "stem" in [c.lower() for c in r]), None)
    if header_at is None:
        raise ValueError(f"{path}: no table with a 'stem' column")
    header = [c.lower() for c in rows[header_at]]
    out: dict[str, dict[str, str]] = {}
    for r in rows[header_at + 1:]:
        if len(r) != len(header):
            continue
        rec = dict(zip(header, r))
        out[rec["stem"]] = rec
    return out


def percentile_stats(values: list[float], low: float) -> dict:
    """``n``, ``mean``, ``p10``, ``min`` and ``below`` (count under ``low``) of IoU values."""
    arr = np.asarray(values, dtype=np.float64)
    return {"n": int(arr.size), "mean": float(arr.mean()), "p10": float(np.percentile(arr, 10)),
            "min": float(arr.min()), "below": int((arr < low).sum())}


def class_table(rows: list[dict], columns: list[str], low: float) -> dict[str, dict]:
    """Per-class IoU statistics: ``{"<column>=<value>": stats}``, plus ``"all"`` and both halves."""
    groups: dict[str, list[float]] = {"all": []}
    for r in rows:
        groups["all"].append(r["iou"])
        groups.setdefault(f"split={r['split']}", []).append(r["iou"])
        if "kind" in r:
            groups.setdefault(f"route={r['kind']}", []).append(r["iou"])
        for col in columns:
            value = r.get("classes", {}).get(col)
            if value:
                groups.setdefault(f"{col}={value}", []).append(r["iou"])
                groups.setdefault(f"{col}={value} [{r['split']}]", []).append(r["iou"])
    return {k: percentile_stats(v, low) for k, v in sorted(groups.items()) if v}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dirs", nargs="+", metavar="IMAGES_DIR MASKS_DIR", help="pairs of folders")
    parser.add_argument("--prompt", required=True, help='what to segment, e.g. "person"')
    parser.add_argument("--engine", default="classic",
                        help="segmentation engine: classic, grounded-sam or auto (default: classic)")
    parser.add_argument("--model-root", default=None, help="model weights as DIR/<org>/<name>/ (grounded-sam)")
    parser.add_argument("--box-threshold", type=float, default=None, help="grounded-sam box score threshold")
    parser.add_argument("--text-threshold", type=float, default=None, help="grounded-sam token score threshold")
    parser.add_argument("--policy", default=None, help="grounded-sam instance policy: merge, best or largest")
    parser.add_argument("--out", type=Path, help="write per-image results and means as JSON here")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the raw mediapipe baseline (prompt person only)"
    )
    parser.add_argument("--classes", type=Path, default=None,
                        help="MANIFEST.md / CSV with a 'stem' column giving each image's classes")
    parser.add_argument("--class-columns", default="garment colour,backdrop",
                        help="comma-separated class columns of --classes (default: 'garment colour,backdrop')")
    parser.add_argument("--split", choices=("all", "tune", "heldout"), default="all",
                        help="score one deterministic half of the images (CRC32 of the stem), or all")
    parser.add_argument("--low", type=float, default=0.6, help="count images below this IoU (default 0.6)")
    parser.add_argument("--subject", action="store_true",
                        help="score the classic engine's catalog subject instead (ClassicSegmenter.segment_subject: "
                             "routing by person evidence, cutout or person mask fused with the backdrop model); "
                             "the row records the route (kind)")
    args = parser.parse_args(argv)
    if len(args.dirs) % 2:
        parser.error("give IMAGES_DIR MASKS_DIR pairs (an even number of folders)")

    from pipelines.segmentation.classic import ClassicSegmenter
    from pipelines.errors import NothingFoundError
    from pipelines.segmentation.api import segment_image

    subject_engine = ClassicSegmenter()

    options = {k: v for k, v in (("box_threshold", args.box_threshold), ("text_threshold", args.text_threshold),
                                 ("policy", args.policy)) if v is not None}

    baseline = args.prompt.strip().lower() == "person" and not args.no_baseline
    if baseline:
        from pipelines.segmentation.person import mediapipe_baseline_masks

    columns = [c.strip().lower() for c in args.class_columns.split(",") if c.strip()]
    rows: list[dict] = []
    pairs = [(Path(args.dirs[i]), Path(args.dirs[i + 1])) for i in range(0, len(args.dirs), 2)]
    header = (
        f"{'image':<40} {'iou':>7}" + (f" {'selfie':>7} {'pose':>7}" if baseline else "") + f" {'sec':>6}"
    )
    print(header)
    for images_dir, masks_dir in pairs:
        if not images_dir.is_dir() or not masks_dir.is_dir():
            print(
                f"error: not a folder: {images_dir if not images_dir.is_dir() else masks_dir}",
                file=sys.stderr,
            )
            return 2
        classes: dict[str, dict[str, str]] = {}
        manifest = args.classes or images_dir.parent / "MANIFEST.md"
        if manifest.is_file():
            try:
                classes = read_classes(manifest)
            except ValueError as exc:
                if args.classes is not None:
                    print(f"error: {exc}", file=sys.stderr)
                    return 2
        for path in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            split = split_of(path.stem)
            if args.split != "all" and split != args.split:
                continue
            name = str(path)
            mask_path = find_mask(masks_dir, path.stem)
            if mask_path is None:
                rows.append({"image": name, "error": "no mask"})
                print(f"{path.name:<40} error: no mask in {masks_dir}")
                continue
            rgb = load_rgb(path)
            truth = load_mask(mask_path)
            if truth.shape != rgb.shape[:2]:
                msg = (
                    f"mask {mask_path.name} is {truth.shape[1]}x{truth.shape[0]}, "
                    f"image is {rgb.shape[1]}x{rgb.shape[0]}"
                )
                rows.append({"image": name, "mask": str(mask_path), "error": msg})
                print(f"{path.name:<40} error: {msg}")
                continue
            start = time.perf_counter()
            kind = None
            if args.subject:
                try:
                    subject = subject_engine.segment_subject(rgb, name=str(path))
                    pred, kind = subject.alpha >= 128, subject.kind
                except NothingFoundError:
                    pred, kind = np.zeros(rgb.shape[:2], bool), "nothing"
            else:
                pred = segment_image(rgb, args.prompt, engine=args.engine, model_root=args.model_root,
                                     **options) > 0
            seconds = time.perf_counter() - start
            row = {
                "image": name,
                "mask": str(mask_path),
                "iou": iou(pred, truth),
                "seconds": round(seconds, 3),
                "split": split,
                **({"kind": kind} if kind is not None else {}),
                "classes": {c: classes[path.stem][c] for c in columns if c in classes.get(path.stem, {})},
            }
            line = f"{path.name:<40} {row['iou']:7.3f}" + (f" {kind:>8}" if kind is not None else "")
            if baseline:
                raw = mediapipe_baseline_masks(rgb)
                row["baseline_selfie"] = iou(raw["selfie"] > 0.5, truth)
                row["baseline_pose"] = iou(raw["pose"] > 0.5, truth)
                line += f" {row['baseline_selfie']:7.3f} {row['baseline_pose']:7.3f}"
            print(line + f" {seconds:6.2f}")
            rows.append(row)

    scored = [r for r in rows if "iou" in r]
    summary: dict = {
        "prompt": args.prompt,
        "engine": args.engine,
        "model_root": args.model_root,
        "options": options,
        "pairs": [[str(a), str(b)] for a, b in pairs],
        "images": len(scored),
        "errors": len(rows) - len(scored),
    }
    if scored:
        summary["mean_iou"] = float(np.mean([r["iou"] for r in scored]))
        summary["mean_seconds"] = float(np.mean([r["seconds"] for r in scored]))
        line = f"{'mean (' + str(len(scored)) + ' images)':<40} {summary['mean_iou']:7.3f}"
        if baseline:
            summary["mean_baseline_selfie"] = float(np.mean([r["baseline_selfie"] for r in scored]))
            summary["mean_baseline_pose"] = float(np.mean([r["baseline_pose"] for r in scored]))
            line += f" {summary['mean_baseline_selfie']:7.3f} {summary['mean_baseline_pose']:7.3f}"
        print(line + f" {summary['mean_seconds']:6.2f}")
        table = class_table(scored, columns, args.low)
        summary["classes"] = table
        print(f"\n{'class':<44} {'n':>3} {'mean':>6} {'p10':>6} {'min':>6} {'<' + str(args.low):>5}")
        for key, st in table.items():
            print(f"{key:<44} {st['n']:>3} {st['mean']:6.3f} {st['p10']:6.3f} {st['min']:6.3f} {st['below']:>5}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": summary, "images": rows}, indent=2))
    return 0 if scored else 1


if __name__ == "__main__":
    sys.exit(main())
