"""Per-stage times of the classic compositing of one SKU's two outputs (main 2000x2000 on white, studio
lifestyle 1600x2000 with its contact shadow), on a code-drawn 1024 px tee: min of N runs per stage.

    .venv/bin/python bench/compositing_stages.py [--runs 5]

Run it in two checkouts (before / after a change) to compare stages; docs/performance.md has the figures.
The floor of the same outputs (re-encoding them) is printed by bench/classic_throughput.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    from pipelines.compositing.backgrounds import apply_shadow, make_background
    from pipelines.compositing.seam import inpaint_seam
    from pipelines.compositing.composite import alpha_composite, check_preserved, fit_placement, preserve_mask, render_layer, seam_band
    from pipelines.engines.classic import contact_shadow_map
    from pipelines.imageio import save_image, save_mask
    from pipelines.samples import draw_tee

    try:  # the catalog's seam-only check (as pipelines.catalog.guarantee.check_guarantee counts it)
        from pipelines.compositing.composite import count_changed
    except ImportError:  # an older checkout

        def count_changed(a, b, where):
            return int(np.any(a != b, axis=2)[where].sum())

    rgb, m = draw_tee(1024)
    m = cv2.GaussianBlur(m, (5, 5), 1.2)  # a soft edge, as a real cutout has
    ys, xs = np.nonzero(m > 127)
    bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    res: dict[str, float] = {}
    tmp = Path(tempfile.mkdtemp())

    def t(name, f, n=args.runs):
        best = min(_timed(f) for _ in range(n))
        res[name] = res.get(name, 0.0) + best

    for size, kind in (((2000, 2000), "white"), ((1600, 2000), "studio")):
        pl = fit_placement(bbox, size)
        t("render_layer", lambda: (render_layer(rgb, pl), render_layer(m, pl, mode="L")))
        fg, al = render_layer(rgb, pl), render_layer(m, pl, mode="L")
        t("seam_band+preserve", lambda: (seam_band(al, 3, 4), preserve_mask(al, 3)))
        band, keep = seam_band(al, 3, 4), preserve_mask(al, 3)
        if kind == "studio":
            t("background", lambda: make_background("studio", size, 0))
            t("shadow", lambda: apply_shadow(make_background("studio", size, 0), contact_shadow_map(al)))
        bg = make_background(kind, size, 0)
        t("composite", lambda: alpha_composite(bg, fg, al))
        comp = alpha_composite(bg, fg, al)
        t("seam_inpaint", lambda: inpaint_seam(comp, fg, al, bg, band))
        fin = inpaint_seam(comp, fg, al, bg, band)
        t("checks", lambda: (check_preserved(fin, fg, keep), count_changed(fin, comp, band == 0)))
        t("encode 3 masks", lambda: [save_mask(tmp / f"m{i}.png", x) for i, x in enumerate((al, keep, band))])
        t("encode output png", lambda: save_image(tmp / "o.png", fin, compress_level=1))
    total = sum(v for k, v in res.items() if not k.startswith("encode"))
    print(json.dumps({k: round(v, 4) for k, v in res.items()}, indent=1))
    print(f"compositing (without encoding), two outputs: {total:.3f} s")
    return 0


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
