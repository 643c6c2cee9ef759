"""Seconds per photo of the classic engine's segmentation stage (``find_subject``), one process.

The same inputs as ``bench/classic_throughput.py`` (4 in 5 code-drawn products, 1 in 5 an on-model
photo, 1024 px on the longer side), segmented in one process after a warm-up, so that the figure is the
segmentation's own cost without compositing, encoding or worker start-up. Prints the median and p90 per
route (product / person) and overall.

    .venv/bin/python bench/segment_speed.py [--images 30] [--size 1024] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=30)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=1, help="segment every photo this many times")
    args = ap.parse_args()

    from classic_throughput import make_products

    from pipelines.engines.registry import get_engine
    from pipelines.imageio import load_image
    from pipelines.product import load_product

    engine = get_engine("classic")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_products(root, args.images, args.size)
        skus = sorted(p for p in root.iterdir())
        items = [(load_image(sku / "front.jpg"), load_product(sku, root=root)) for sku in skus]
        engine.find_subject(*items[0])  # warm-up: model graphs
        engine.find_subject(*items[4 if len(items) > 4 else 0])
        times: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            for img, product in items:
                t = time.perf_counter()
                subject = engine.find_subject(img, product)
                times.setdefault(subject.kind, []).append(time.perf_counter() - t)
    every = [t for v in times.values() for t in v]
    print(f"classic find_subject, {args.images} photos at {args.size} px, {os.cpu_count()} CPUs, one process")
    for kind, v in sorted(times.items()) + [("all", every)]:
        v = sorted(v)
        p90 = v[min(len(v) - 1, int(round(0.9 * (len(v) - 1))))]
        print(f"  {kind:<8} n={len(v):<3} median {statistics.median(v):.3f} s   p90 {p90:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
