"""Helpers shared by the reliability tests: a batch worker subprocess, a catalog integrity check, figures.

Not a test module. The worker renders SKUs with `pipelines.catalog.render.process_sku` (no Prefect, so it starts
in about a second) and can be SIGKILLed at any moment; `check_catalog` says whether what it left is sound.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipelines.catalog.store import LOCKS_DIR, STAGING_DIR, TRASH_DIR
from pipelines.imageio import save_image, sha256_file
from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest, validate_manifest
from pipelines.samples import draw_tee

REPO = Path(__file__).resolve().parents[2]
FIGURES_ENV = "VITRINE_RELIABILITY_FIGURES"
#: Small renders keep the loops fast; every other parameter is the production default.
SMALL_OPTIONS: dict[str, Any] = {"canvas": 256, "lifestyle_size": [200, 256]}
#: Catalog folders that are not entries.
SERVICE_DIRS = (STAGING_DIR, TRASH_DIR, LOCKS_DIR)

WORKER = r"""
import json, sys
from pathlib import Path
from pipelines.catalog.options import RenderOptions
from pipelines.catalog.render import process_sku
from pipelines.engines.registry import get_engine
from pipelines.product import load_product

products, catalog = Path(sys.argv[1]), Path(sys.argv[2])
options = json.loads(sys.argv[3])
force, lock_timeout = sys.argv[4] == "1", float(sys.argv[5])
skus = sys.argv[6:]
engine = get_engine("classic")
opts = RenderOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
items = [load_product(products / s, root=products) for s in skus]
print("ready", flush=True)
sys.stdin.readline()
for product in items:
    result = process_sku(product, catalog, engine, opts, force=force, lock_timeout=lock_timeout)
    print(json.dumps(result.to_json()), flush=True)
print("finished", flush=True)
"""


def render_options(options: dict[str, Any] | None = None):
    """`RenderOptions` from a JSON-like dict (lists become tuples), as the worker builds them."""
    from pipelines.catalog.options import RenderOptions

    options = SMALL_OPTIONS if options is None else options
    return RenderOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})


def make_products(root: Path, n: int, size: int = 192) -> list[str]:
    """``n`` small drawn-tee SKUs under ``root``: some with lifestyle scenes, one with an alternate photo."""
    skus = []
    for i in range(n):
        sku = f"sku-{i:02d}"
        d = root / sku
        d.mkdir(parents=True)
        save_image(d / "front.png", draw_tee(size, seed=i)[0])
        if i % 3 == 1:
            save_image(d / "side.png", draw_tee(size, color=(120, 30, 40), seed=i)[0])
        backgrounds = "[white, studio]" if i % 2 else "[white]"
        (d / "product.yaml").write_text(f"backgrounds: {backgrounds}\n")
        skus.append(sku)
    return skus


class Worker:
    """A worker subprocess: started, waits at a barrier until `go`, then renders its SKUs in order."""

    def __init__(self, products: Path, catalog: Path, skus: list[str], *, options: dict | None = None,
                 force: bool = False, lock_timeout: float = 0.0):
        args = [sys.executable, "-c", WORKER, str(products), str(catalog),
                json.dumps(options or SMALL_OPTIONS), "1" if force else "0", str(lock_timeout), *skus]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "GLOG_minloglevel": "2"}
        self.proc = subprocess.Popen(args, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        self.lines: list[str] = []

    def wait_ready(self, timeout: float = 60.0) -> None:
        line = self._readline(timeout)
        if line != "ready":
            self.proc.kill()
            raise RuntimeError(f"worker did not start (got {line!r}, exit {self.proc.poll()})")

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """SIGKILL: no handler, no cleanup, no flush — the worst crash a process can have."""
        self.proc.kill()
        self.proc.wait()
        self._drain()

    def wait(self, timeout: float = 120.0) -> int:
        self.proc.wait(timeout)
        self._drain()
        return self.proc.returncode

    def results(self) -> list[dict[str, Any]]:
        """The `SkuResult` JSON of every SKU the worker reported before it ended."""
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    def _readline(self, timeout: float) -> str:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                return ""
        finally:
            sel.close()
        return self.proc.stdout.readline().strip()

    def _drain(self) -> None:
        rest = self.proc.stdout.read() if self.proc.stdout else ""
        self.lines.extend(line.strip() for line in rest.splitlines() if line.strip())
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except (BrokenPipeError, OSError):
                pass


def check_catalog(catalog: Path, skus: list[str]) -> tuple[dict[str, str], list[str]]:
    """Check that everything visible in a catalog is a complete entry.

    Outside ``.staging``, ``.trash`` and ``.locks`` (and ``_reports``, ``_review``) every folder must be a SKU of
    ``skus`` holding a manifest that parses and validates, every file it lists with the sha256 it records,
    and no other file (no temporary, partial or stray file).

    Returns:
        `(complete, problems)`: ``{sku: sha256 of its manifest.json}`` for each sound entry, and a
        description of each problem found.
    """
    complete: dict[str, str] = {}
    problems: list[str] = []
    if not catalog.exists():
        return complete, problems
    for entry in sorted(catalog.iterdir()):
        if entry.name in SERVICE_DIRS or entry.name in ("_reports", "_review"):
            continue
        if entry.name not in skus or not entry.is_dir():
            problems.append(f"{entry.name}: unexpected item in the catalog")
            continue
        try:
            manifest = read_manifest(entry / MANIFEST_NAME)
            validate_manifest(manifest, path=entry / MANIFEST_NAME)
        except Exception as exc:  # noqa: BLE001 - any failure here is a finding
            problems.append(f"{entry.name}: manifest unreadable or invalid: {exc}")
            continue
        listed = {r["file"]: r["sha256"] for r in manifest["outputs"] + manifest["work"]
                  + manifest.get("stale_edits", [])}
        on_disk = {p.relative_to(entry).as_posix() for p in entry.rglob("*") if p.is_file()}
        extra = on_disk - set(listed) - {MANIFEST_NAME}
        missing = set(listed) - on_disk
        bad = [f for f, sha in listed.items() if f in on_disk and sha256_file(entry / f) != sha]
        if extra or missing or bad:
            problems.append(f"{entry.name}: extra {sorted(extra)}, missing {sorted(missing)}, "
                            f"bad sha256 {bad}")
            continue
        complete[entry.name] = sha256_file(entry / MANIFEST_NAME)
    locks = catalog / LOCKS_DIR
    if locks.is_dir():
        problems += [f"{p}: not a lock file" for p in locks.iterdir() if p.suffix != ".lock"]
    return complete, problems


def record_figures(section: str, data: dict[str, Any]) -> None:
    """Merge ``{section: data}`` into the JSON file named by ``$VITRINE_RELIABILITY_FIGURES``, if set.

    bench/reliability.py sets it to collect the figures that docs/reliability.md reports.
    """
    path = os.environ.get(FIGURES_ENV)
    if not path:
        return
    p = Path(path)
    figures = json.loads(p.read_text()) if p.is_file() else {}
    figures[section] = data
    p.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
