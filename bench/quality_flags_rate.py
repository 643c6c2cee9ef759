"""Flag rate of the quality flags (pipelines/quality/flags.py) over a folder of product photos.

Each image becomes a one-photo SKU rendered by the classic engine (backgrounds white + studio); the
script prints, per flag, how many photos and outputs it fired on, and each photo's flags.

    PYTHONPATH=. python bench/quality_flags_rate.py /work/shared/evaldata/shop_garments/images
    PYTHONPATH=. python bench/quality_flags_rate.py --demo
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import tempfile
from pathlib import Path

from pipelines.catalog.render import process_sku
from pipelines.engines.registry import get_engine
from pipelines.catalog.manifest import read_manifest
from pipelines.product import discover_products
from pipelines.samples import build_sample_products

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="?", help="a folder of product photos")
    ap.add_argument("--demo", action="store_true", help="the sample products of `vitrine demo` instead")
    ap.add_argument("--json", default=None, help="also write the per-photo results here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vitrine-flags-"))
    products = work / "products"
    if args.demo:
        build_sample_products(products)
    else:
        for img in sorted(Path(args.images).iterdir()):
            if img.suffix.lower() in SUFFIXES:
                d = products / img.stem
                d.mkdir(parents=True)
                shutil.copy(img, d / f"front{img.suffix.lower()}")
                (d / "product.yaml").write_text("backgrounds: [white, studio]\n")
    goods, bads = discover_products(products)
    engine = get_engine("classic")
    per_photo, photos_with, outputs_with = {}, collections.Counter(), collections.Counter()
    n_outputs = 0
    for p in goods:
        r = process_sku(p, work / "catalog", engine)
        if r.status != "ok":
            per_photo[p.sku] = {"failed": r.error}
            photos_with["(refused/failed)"] += 1
            continue
        m = read_manifest(work / "catalog" / p.sku / "manifest.json")
        flags = {}
        for o in m["outputs"]:
            if "placement" in o:
                n_outputs += 1
                names = sorted({f["flag"] for f in o["quality"]["flags"]})
                flags[o["file"]] = names
                outputs_with.update(names)
                outputs_with["(any)"] += bool(names)
        seen = {f for names in flags.values() for f in names}
        photos_with.update(seen)
        photos_with["(any)"] += bool(seen)
        per_photo[p.sku] = {"flags": flags, "cutout": m["subjects"][0]["quality"]["cutout"]}
        print(p.sku, json.dumps(flags), file=sys.stderr)
    n = len(goods)
    print(f"{n} photos, {n_outputs} placed outputs")
    for name in sorted(set(photos_with) | set(outputs_with)):
        print(f"{name:24s} photos {photos_with[name]:3d}/{n} ({photos_with[name] / max(n, 1):.0%})   "
              f"outputs {outputs_with[name]:3d}/{n_outputs} ({outputs_with[name] / max(n_outputs, 1):.0%})")
    if args.json:
        Path(args.json).write_text(json.dumps(per_photo, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
