"""How well the cutout flags (pipelines/quality/flags.cutout_sanity) separate good and bad cutouts.

For each photo with a ground-truth mask, the engine's cutout (`find_subject`) is compared with the
truth (IoU, and holes: enclosed background of the cutout inside the true silhouette, as a share of it)
and with the flags' second opinion. A cutout is *bad* when its IoU with the truth is below --bad-iou or
its true holes exceed --bad-holes; the script prints the confusion of "flagged" against "bad".

    PYTHONPATH=. python bench/cutout_flags_eval.py /work/shared/evaldata/shop_garments/images \\
        /work/shared/evaldata/shop_garments/masks
    PYTHONPATH=. python bench/cutout_flags_eval.py E/cihp_pgn/images E/cihp_pgn/masks_person ...   # several pairs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from pipelines.engines.registry import get_engine
from pipelines.imageio import load_image
from pipelines.product import ProductSpec
from pipelines.quality.checks import iou
from pipelines.quality.flags import _holes, cutout_sanity


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", metavar="IMAGES MASKS",
                    help="pairs of folders: photos, and their <stem>.png (or <stem>_mask.png) masks, 255 = subject")
    ap.add_argument("--bad-iou", type=float, default=0.85)
    ap.add_argument("--bad-holes", type=float, default=0.004)
    args = ap.parse_args()
    if len(args.folders) % 2:
        ap.error("give the folders in pairs: IMAGES MASKS [IMAGES MASKS ...]")
    engine = get_engine("classic")
    tp = fp = fn = tn = 0
    pairs = [(Path(a), Path(b)) for a, b in zip(args.folders[::2], args.folders[1::2])]
    for path, mask_path in ((p, m) for images, masks in pairs for p in sorted(images.iterdir())
                            for m in [next((masks / f"{p.stem}{end}" for end in (".png", "_mask.png")
                                            if (masks / f"{p.stem}{end}").is_file()), None)] if m is not None):
        img = load_image(path)
        truth = np.asarray(Image.open(mask_path).convert("L")) >= 128
        product = SimpleNamespace(spec=ProductSpec(), dir=path.parent, sku=path.stem)
        subject = engine.find_subject(img, product)
        cut = subject.alpha >= 128
        if truth.shape != cut.shape:
            truth = np.asarray(Image.fromarray(truth.astype(np.uint8) * 255).resize(cut.shape[::-1])) >= 128
        true_iou = iou(cut, truth)
        true_holes = float((_holes(np.where(cut, 255, 0).astype(np.uint8)) & truth).sum()) / max(int(truth.sum()), 1)
        rec = cutout_sanity(img.rgb, subject.alpha, subject.kind)
        flagged = bool(rec["flags"])
        bad = true_iou < args.bad_iou or true_holes > args.bad_holes
        tp += flagged and bad
        fp += flagged and not bad
        fn += bad and not flagged
        tn += not bad and not flagged
        print(f"{path.stem:28s} kind={subject.kind:7s} true_iou={true_iou:.3f} true_holes={true_holes:.4f} "
              f"ref_iou={rec.get('iou', float('nan')):.3f} kept={rec.get('kept', float('nan')):.3f} "
              f"holes={rec.get('holes', float('nan')):.4f} uncertain={rec.get('uncertain', float('nan')):.3f} flags={[f['flag'] for f in rec['flags']]} "
              f"{'BAD' if bad else 'good'}")
    n = tp + fp + fn + tn
    print(f"{n} photos: bad cutouts {tp + fn} (flagged {tp}, missed {fn}); good cutouts {fp + tn} "
          f"(flagged {fp} = false positives, {fp / max(fp + tn, 1):.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
