"""SKUs per minute through the classic engine on this machine, at 1024 px inputs.

Builds N sample SKUs (code-drawn products and package photos, resized to 1024 px on the longer
side), renders them with ``pipelines.catalog.render.process_sku`` in W worker processes (the batch flow's
unit of work, without Prefect's start-up), and prints per-stage timings and throughput. A second
pass over the same catalog measures the skip path (unchanged SKUs).

    .venv/bin/python bench/classic_throughput.py [--skus 20] [--workers 2] [--size 1024]

Target (issue 12): >= 60 SKUs/min on 2 cores (issue 2: >= 30). The floor line re-decodes each SKU's
input and re-encodes the same outputs (images, masks, work images, exports): the cost no renderer avoids.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

SPEC = "backgrounds: [white, studio]\nseeds: [0]\n"


def make_products(root: Path, n: int, size: int) -> None:
    from pipelines.imageio import save_image
    from pipelines.samples import astronaut, draw_dress, draw_tee, draw_tote, grace_hopper

    makers = [lambda i: draw_tee(size, seed=i)[0], lambda i: draw_tote(size, seed=i)[0],
              lambda i: draw_dress(size, seed=i)[0]]
    photos = [astronaut(), grace_hopper()]
    for i in range(n):
        d = root / f"sku-{i:03d}"
        d.mkdir(parents=True)
        if i % 5 == 4:  # one in five is an on-model photo (person segmentation + pose)
            img = photos[i % 2]
            h, w = img.shape[:2]
            s = size / max(h, w)
            img = np.asarray(Image.fromarray(img).resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS))
        else:
            img = makers[i % 3](i)
        save_image(d / "front.jpg", img, quality=92)
        (d / "product.yaml").write_text(SPEC)


def _work(args):
    products, catalog, skus = args
    from pipelines.catalog.render import process_sku
    from pipelines.engines.registry import get_engine
    from pipelines.product import load_product

    engine = get_engine("classic")
    out = []
    for sku in skus:
        cpu0 = time.process_time()
        r = process_sku(load_product(Path(products) / sku, root=Path(products)), catalog, engine)
        cpu = time.process_time() - cpu0
        timings = {}
        if r.status == "ok":
            timings = json.loads((Path(catalog) / sku / "manifest.json").read_text())["timings"]
            timings["cpu"] = cpu  # this process's CPU seconds for the SKU (all its threads)
        out.append((sku, r.status, r.seconds, timings, r.error))
    return out


def measure_floor(products: Path, catalog: Path, skus: list[str]) -> list[dict[str, float]]:
    """Per SKU: seconds to decode its input photo and to encode its outputs (images at the catalog's
    PNG level, masks and work images as written, JPEG/WebP exports) again: the floor no pipeline beats."""
    import io

    from pipelines.catalog.options import RenderOptions

    level = RenderOptions().png_compress_level
    rows = []
    for sku in skus:
        sku_dir = catalog / sku
        manifest = json.loads((sku_dir / "manifest.json").read_text())
        t0 = time.perf_counter()
        for inp in manifest["inputs"]:
            if inp.get("role") != "spec":
                with Image.open(products / sku / inp["file"]) as im:
                    im.load()
        decode = time.perf_counter() - t0
        files = [o["file"] for o in manifest["outputs"]] + [w["file"] for w in manifest["work"]
                                                            if w["file"].endswith(".png")]
        arrays = []
        for f in files:
            with Image.open(sku_dir / f) as im:
                im.load()
                arrays.append((f, im.copy()))
        t0 = time.perf_counter()
        for f, im in arrays:
            buf = io.BytesIO()
            if f.endswith(".png"):
                im.save(buf, format="PNG", compress_level=level if im.mode == "RGB" else 1)
            elif f.endswith((".jpg", ".jpeg")):
                im.save(buf, format="JPEG", quality=92)
            else:
                im.save(buf, format="WEBP", quality=92)
        rows.append({"decode": decode, "encode": time.perf_counter() - t0})
    return rows


def run_pass(products: Path, catalog: Path, workers: int) -> tuple[float, list]:
    skus = sorted(p.name for p in products.iterdir())
    shards = [skus[i::workers] for i in range(workers)]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        results = [r for part in pool.map(_work, [(str(products), str(catalog), s) for s in shards]) for r in part]
    return time.perf_counter() - t0, results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skus", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        products, catalog = Path(tmp) / "products", Path(tmp) / "catalog"
        make_products(products, args.skus, args.size)
        # Warm-up in the pool's processes is part of the measured pass: model loads count, as in a batch.
        wall, results = run_pass(products, catalog, args.workers)
        failed = [r for r in results if r[1] != "ok"]
        wall2, results2 = run_pass(products, catalog, args.workers)
        skipped = sum(1 for r in results2 if r[1] == "skipped")
        floor = measure_floor(products, catalog, sorted(r[0] for r in results if r[1] == "ok"))
    stages: dict[str, list[float]] = {}
    for _, status, _, timings, _ in results:
        for k, v in timings.items():
            stages.setdefault(k, []).append(v)
    print(f"classic engine, {args.skus} SKUs at {args.size} px, {args.workers} worker processes, {os.cpu_count()} CPUs")
    print(f"  render pass : {wall:7.2f} s  -> {60 * args.skus / wall:6.1f} SKUs/min  ({len(failed)} failed)")
    print(f"  re-run pass : {wall2:7.2f} s  -> {skipped}/{args.skus} skipped as unchanged "
          f"({60 * args.skus / wall2:.0f} SKUs/min)")
    print("  per-SKU stage medians (s): " + ", ".join(
        f"{k}={statistics.median(v):.3f}" for k, v in sorted(stages.items()) if k != "cpu"))
    if floor:
        dec = statistics.median(r["decode"] for r in floor)
        enc = statistics.median(r["encode"] for r in floor)
        total = statistics.median(stages.get("total", [float("nan")]))
        print(f"  floor per SKU (s, one process): decode={dec:.3f} + encode={enc:.3f} = {dec + enc:.3f}"
              f"  vs total={total:.3f} ({total / max(dec + enc, 1e-9):.1f}x the floor)")
    if stages.get("cpu"):
        cpu = statistics.median(stages["cpu"])
        cores = min(args.workers, os.cpu_count() or 1)
        print(f"  CPU per SKU (median): {cpu:.3f} s -> CPU-bound estimate on {cores} free cores: "
              f"{60 * cores / cpu:.1f} SKUs/min (what the render pass gives on an otherwise idle machine)")
    print(f"  target >= 60 SKUs/min (issue 12): ratio {60 * args.skus / wall / 60:.2f}x of target")
    for r in failed:
        print("  FAILED", r[0], r[4])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
