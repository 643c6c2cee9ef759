"""Start-up cost of ``vitrine run``: the direct (Prefect-free) path next to the Prefect flow path.

Three cases, each run as a fresh ``python -m flows.cli`` process (wall-clock seconds, best of ``--repeat``):

- ``empty``: an empty products folder (an error since issue 14 #14: it measures how soon the CLI answers);
- ``first run``: a small catalog of ``--skus`` SKUs rendered for the first time;
- ``skipped re-run``: the same catalog run again, every SKU unchanged and skipped.

Usage::

    python bench/cli_startup.py [--skus 5] [--repeat 1]

Prints one table row per case with both paths side by side and their ratio. Figures depend on the machine
(and its load); docs/cli.md quotes them with the machine described.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, capture_output=True, text=True)
    return time.perf_counter() - t, r.returncode, (r.stdout.strip().splitlines() or [""])[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skus", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from pipelines.imageio import save_image
    from pipelines.samples import draw_tee

    work = Path(tempfile.mkdtemp(prefix="vitrine-cli-startup-"))
    try:
        products, empty = work / "products", work / "empty"
        empty.mkdir()
        for i in range(args.skus):
            d = products / f"tee-{i:02d}"
            d.mkdir(parents=True)
            save_image(d / "front.png", draw_tee(512)[0])  # 512 px: enlarged 4.8x (flagged), under the 8x refusal
            (d / "product.yaml").write_text("backgrounds: [white]\n")
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(work / "prefect"))
        rows = []
        for case in ("empty", "first run", "skipped re-run"):
            times = {}
            for path, extra in (("direct", []), ("prefect", ["--prefect"])):
                best = None
                for rep in range(args.repeat):
                    catalog = work / f"catalog-{path}"
                    if case == "first run":
                        shutil.rmtree(catalog, ignore_errors=True)
                    src = empty if case == "empty" else products
                    seconds, code, first = _run(["run", str(src), "--catalog", str(catalog), "--no-progress", *extra],
                                                env)
                    best = seconds if best is None else min(best, seconds)
                times[path] = (best, code, first)
            rows.append((case, times))
        expected = {"empty": 2, "first run": 0, "skipped re-run": 0}
        wrong = [f"{case} ({path}): exit {t[path][1]}, {t[path][2]!r}" for case, t in rows for path in t
                 if t[path][1] != expected[case]]
        if wrong:  # a start-up figure of a run that failed measures the failure, not the start-up
            raise SystemExit("runs did not end as expected: " + "; ".join(wrong))
        print(f"vitrine run start-up, {args.skus} SKUs (seconds, best of {args.repeat}; exit code, first line)")
        print(f"{'case':<16} {'direct':>8} {'prefect':>8} {'ratio':>7}   direct says / prefect says")
        for case, t in rows:
            d, p = t["direct"], t["prefect"]
            print(f"{case:<16} {d[0]:8.2f} {p[0]:8.2f} {p[0] / d[0]:6.1f}x   [{d[1]}] {d[2][:40]!r} / [{p[1]}] "
                  f"{p[2][:40]!r}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
