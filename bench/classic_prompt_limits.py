"""How often the classic engine refuses a garment prompt, on folders of product shots and of people.

`pipelines.segmentation.classic.check_classic_can_isolate` refuses a product/garment prompt on a photo that shows a
person, because the classic cutout there is the whole body. It decides with the classic pose estimator
(at least `CLASSIC_PERSON_KEYPOINTS` keypoints scored above 0.5). This measures that rule, and for
comparison the person-mask share (at least 5 % of the photo found as person by the classic person
segmenter), on labelled folders: on product shots (no person) every refusal is a false one; on photos of
people every acceptance is a miss.

Usage: ``python bench/classic_prompt_limits.py --products DIR [DIR ...] --people DIR [DIR ...]``
(folders are searched recursively for .jpg/.jpeg/.png/.webp; files under folders named ``mask*``,
``label*``, ``edge*``, ``*parse*`` or ``keypoint*`` are skipped). Prints, per class and rule, the refusal
rate and the wrong decisions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def _images(folders: list[str]) -> list[Path]:
    out = []
    for f in folders:
        for p in sorted(Path(f).rglob("*")):
            skip = [part.lower() for part in p.relative_to(f).parts[:-1]]
            if p.suffix.lower() in SUFFIXES and not any(
                    s.startswith(("mask", "label", "edge", "keypoint")) or "parse" in s for s in skip):
                out.append(p)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", nargs="*", default=[], help="folders of product shots (no person)")
    ap.add_argument("--people", nargs="*", default=[], help="folders of photos of people")
    ap.add_argument("--max-side", type=int, default=768)
    args = ap.parse_args()

    from pipelines.segmentation.person import segment_person
    from pipelines.controls.pose import get_pose_estimator
    from pipelines.imageio import load_image
    from pipelines.segmentation.classic import CLASSIC_PERSON_KEYPOINTS

    pose = get_pose_estimator()
    for label, folders, refuse_expected in (("products", args.products, False), ("people", args.people, True)):
        files = _images(folders)
        if not files:
            continue
        shares, keypoints, t0 = [], [], time.perf_counter()
        for p in files:
            rgb = load_image(p, max_side=args.max_side).rgb
            shares.append(float((segment_person(rgb) >= 0.5).mean()))
            keypoints.append(int((pose(rgb).keypoints[:, 2] > 0.5).sum()))
        print(f"{label}: {len(files)} photos ({time.perf_counter() - t0:.1f} s); person share min {min(shares):.3f} "
              f"median {statistics.median(shares):.3f} max {max(shares):.3f}")
        for rule, refused in ((f"pose keypoints >= {CLASSIC_PERSON_KEYPOINTS} (used)",
                               [k >= CLASSIC_PERSON_KEYPOINTS for k in keypoints]),
                              ("person share >= 0.05 (not used)", [s >= 0.05 for s in shares])):
            wrong = [i for i, r in enumerate(refused) if r != refuse_expected]
            print(f"  {rule}: refused {sum(refused)}/{len(files)}, "
                  f"{'false refusals' if not refuse_expected else 'misses'} {len(wrong)}")
            for i in wrong[:5]:
                print(f"    {files[i]} (keypoints {keypoints[i]}, person share {shares[i]:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
