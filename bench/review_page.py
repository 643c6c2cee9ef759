"""First paint of the live review page at catalog scale (target: <= 3 s at 300 SKUs; docs/review.md).

For each size it builds a catalog fast (one SKU rendered by the classic engine, then copied: pictures
hard-linked, manifests rewritten; every 7th SKU flagged, a few failed SKUs in a batch report, see
``tests/review_helpers.build_scale_catalog``), starts `pipelines.review_ui.server.ReviewServer`, and opens
the page in headless Chromium (Debian's, through Playwright) twice:

- ``cold``: the server's first request (it reads every manifest to build its index); ``html_s`` is the
  browser's navigation up to the load event;
- ``warm``: a reload (the index only ``stat``s each manifest); ``html_s`` is the server's time for the HTML
  alone.

It prints, per size: ``html_s``, the browser's first contentful paint
(``fcp_s``, from navigation start) and ``load_s``, the page's element count, and the ratio to the
smallest size, side by side. The page shows one page of SKUs, so the warm figures should stay nearly
flat as the catalog grows; the cold ones grow with the number of manifests.

Usage: ``python bench/review_page.py [--sizes 300 1000 10000] [--out bench/results/review_page.json]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _chromium() -> str:
    for c in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if c and Path(c).is_file():
            return c
    raise SystemExit("no system Chromium: apt-get install -y chromium (or make browser-deps)")


def _measure(browser, url: str) -> dict:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    out = {}
    for label in ("cold", "warm"):
        t0 = time.perf_counter()
        page.goto(url, wait_until="load", timeout=600_000)  # cold: the server builds its index meanwhile
        goto_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=600) as r:  # the server's own time for the HTML, warm
            r.read()
        html_s = goto_s if label == "cold" else time.perf_counter() - t0
        timing = page.evaluate("""() => {
            const fcp = performance.getEntriesByName('first-contentful-paint')[0];
            const nav = performance.getEntriesByType('navigation')[0];
            return {fcp: fcp ? fcp.startTime / 1000 : null, load: nav ? nav.loadEventEnd / 1000 : null,
                    nodes: document.getElementsByTagName('*').length};
        }""")
        out[label] = {"html_s": round(html_s, 3), "fcp_s": timing["fcp"] and round(timing["fcp"], 3),
                      "load_s": timing["load"] and round(timing["load"], 3), "nodes": timing["nodes"]}
    ctx.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 10000])
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright
    from tests.helpers.review import build_review_catalog, build_scale_catalog

    from pipelines.review_ui.server import ReviewServer

    results = {}
    with tempfile.TemporaryDirectory(prefix="vitrine-bench-review-") as tmp:
        template = build_review_catalog(Path(tmp) / "template")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium(), headless=True,
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            for n in args.sizes:
                t0 = time.perf_counter()
                cat = build_scale_catalog(template, Path(tmp) / f"cat-{n}", n, failed=max(1, n // 100))
                build_s = time.perf_counter() - t0
                srv = ReviewServer(cat, "127.0.0.1", 0)
                srv.start_in_thread()
                try:
                    results[n] = {"build_catalog_s": round(build_s, 1), **_measure(browser, srv.url)}
                finally:
                    srv.shutdown()
                    srv.server_close()
                shutil.rmtree(cat)
                print(f"{n} SKUs: {json.dumps(results[n])}", flush=True)
            browser.close()

    base = results[args.sizes[0]]
    print(f"\n{'SKUs':>7} {'cold html s':>12} {'cold FCP s':>11} {'warm html s':>12} {'warm FCP s':>11} "
          f"{'warm FCP x':>11} {'nodes':>6}")
    for n, r in results.items():
        ratio = (r["warm"]["fcp_s"] or 0) / (base["warm"]["fcp_s"] or 1)
        print(f"{n:>7} {r['cold']['html_s']:>12} {r['cold']['fcp_s']:>11} {r['warm']['html_s']:>12} "
              f"{r['warm']['fcp_s']:>11} {ratio:>11.2f} {r['warm']['nodes']:>6}")
    target = base["cold"]["fcp_s"]
    print(f"\ntarget: first paint <= 3 s at {args.sizes[0]} SKUs (cold): {target} s "
          f"-> {'met' if target is not None and target <= 3 else 'NOT met'}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
