"""grounded-sam subject routing on real photos: product (garment prompt) or person (person prompt).

Usage::

    python bench/grounded_sam_routing.py [EVALDATA_DIR]    # default ../shared/evaldata

Compares, on the labelled sets of the evaluation data (garment photos must route to ``product``, on-model photos
to ``person``), the routing `pipelines.segmentation.grounded_sam.segmenter.GroundedSamSegmenter` uses (evidence of a
person: face, pose keypoints on the subject; `pipelines.segmentation.route`) with the old rule (border uniformity of
the backdrop >= 0.85 means product). The decision needs no GroundingDINO/SAM weights: only the embedded models.
Prints a Markdown table: set, photos, routed correctly by the old rule, by the new one (docs/segmentation.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.imageio import load_image  # noqa: E402
from pipelines.segmentation.cutout import estimate_background  # noqa: E402
from pipelines.segmentation.grounded_sam.segmenter import GroundedSamSegmenter  # noqa: E402
from pipelines.segmentation.subject import PLAIN_BACKGROUND_UNIFORMITY  # noqa: E402

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def labelled_sets(root: Path) -> dict[str, tuple[str, list[Path]]]:
    """{set name: (the expected route, photos)}."""
    mgd = root / "mgd_vitonhd_dresscode"
    return {
        "shop_garments (garments)": ("product", sorted((root / "shop_garments" / "images").glob("*"))),
        "pfafn_viton test_clothes (garments)": ("product", sorted((root / "pfafn_viton" / "test_clothes").glob("*"))),
        "pfafn_viton test_img (on-model, plain backdrop)": ("person", sorted((root / "pfafn_viton" / "test_img").glob("*"))),
        "mgd_vitonhd_dresscode (on-model catalogue)": ("person", sorted([*mgd.glob("dresscode/*/images/*"),
                                                                          *mgd.glob("vitonhd/test/image/*")])),
    }


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "evaldata"
    print("| set | photos | old rule (backdrop uniformity) | evidence of a person |")
    print("|---|---:|---:|---:|")
    for name, (want, files) in labelled_sets(root).items():
        files = [f for f in files if f.suffix.lower() in SUFFIXES]
        old_ok = new_ok = 0
        for f in files:
            rgb = load_image(f, max_side=1024).rgb
            new_ok += GroundedSamSegmenter.route_photo(rgb)[0] == want
            _, _, uniformity = estimate_background(rgb)
            old_ok += ("product" if uniformity >= PLAIN_BACKGROUND_UNIFORMITY else "person") == want
        print(f"| {name} | {len(files)} | {old_ok} | {new_ok} |")


if __name__ == "__main__":
    main()
