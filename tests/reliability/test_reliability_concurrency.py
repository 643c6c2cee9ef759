"""Reliability, concurrency: two batch runs on one catalog at once write each SKU exactly once.

The per-SKU file lock (``CATALOG/.locks/<sku>.lock``) lets one run write a SKU; the other reports it
``skipped`` (locked by another run, or unchanged once the first has finished). Entries are built in
``.staging`` and renamed into place, so no entry ever mixes files from two runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipelines.catalog.render import process_sku
from pipelines.catalog.store import STAGING_DIR, TRASH_DIR
from pipelines.catalog.verify import verify_entry
from pipelines.engines.registry import get_engine
from pipelines.imageio import save_image, sha256_file
from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest
from pipelines.product import load_product
from pipelines.samples import draw_tee
from tests.helpers.reliability import (
    REPO,
    SMALL_OPTIONS,
    Worker,
    check_catalog,
    make_products,
    record_figures,
    render_options,
)

N_SKUS = 8


def _run_two(products: Path, catalog: Path, skus_a: list[str], skus_b: list[str],
             options_b: dict | None = None):
    """Start two workers, release them at the same moment, wait for both; returns their results."""
    a = Worker(products, catalog, skus_a)
    b = Worker(products, catalog, skus_b, options=options_b)
    a.wait_ready()
    b.wait_ready()
    a.go()
    b.go()
    assert a.wait() == 0 and b.wait() == 0
    return a.results(), b.results()


def _empty(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


@pytest.mark.parametrize("order", ["same", "reversed"])
def test_two_batches_at_once_write_each_sku_exactly_once(tmp_path, order):
    products, catalog = tmp_path / "products", tmp_path / "catalog"
    skus = make_products(products, N_SKUS)
    results_a, results_b = _run_two(products, catalog, skus, skus if order == "same" else skus[::-1])

    writers: dict[str, list[str]] = {sku: [] for sku in skus}
    for run, results in (("A", results_a), ("B", results_b)):
        assert sorted(r["sku"] for r in results) == skus, f"run {run} did not report every SKU"
        for r in results:
            assert r["status"] in ("ok", "skipped"), r
            if r["status"] == "ok":
                writers[r["sku"]].append(run)
            else:
                assert r["reason"] in ("locked by another run", "unchanged"), r
    assert all(len(w) == 1 for w in writers.values()), writers

    complete, problems = check_catalog(catalog, skus)
    assert not problems and sorted(complete) == skus
    assert _empty(catalog / STAGING_DIR) and _empty(catalog / TRASH_DIR)
    for sku in skus:
        assert all(v["identical_fraction"] == 1.0 for v in verify_entry(catalog / sku))
    record_figures(f"concurrency_{order}_order", {
        "skus": len(skus), "written_by_A": sum(w == ["A"] for w in writers.values()),
        "written_by_B": sum(w == ["B"] for w in writers.values()),
        "written_twice": sum(len(w) > 1 for w in writers.values()), "problems": len(problems),
    })


def test_two_batches_with_different_parameters_never_interleave(tmp_path):
    """Runs whose parameters differ both write the SKUs, one after the other: every entry is whole."""
    products, catalog = tmp_path / "products", tmp_path / "catalog"
    skus = make_products(products, 6)
    options_b = {**SMALL_OPTIONS, "jpeg_quality": 70}  # a different main.jpg, so a mix would show
    results_a, results_b = _run_two(products, catalog, skus, skus, options_b)
    for r in results_a + results_b:
        assert r["status"] in ("ok", "skipped"), r
    complete, problems = check_catalog(catalog, skus)
    assert not problems and sorted(complete) == skus
    for sku in skus:
        m = read_manifest(catalog / sku / MANIFEST_NAME)
        quality = m["parameters"]["render"]["jpeg_quality"]
        assert quality in (92, 70)
        jpg = next(o for o in m["outputs"] if o["file"] == "main.jpg")
        # main.jpg is the one of the run that wrote the manifest
        assert sha256_file(catalog / sku / "main.jpg") == jpg["sha256"]


def test_two_threads_on_one_sku(tmp_path):
    """Two threads of one process (two flow runs in one worker) on the same SKU: one writes it."""
    products, catalog = tmp_path / "products", tmp_path / "catalog"
    (sku,) = make_products(products, 1)
    engine = get_engine("classic")
    barrier = threading.Barrier(2)
    results = []

    def run():
        product = load_product(products / sku, root=products)
        barrier.wait()
        results.append(process_sku(product, catalog, engine, render_options()))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status for r in results) == ["ok", "skipped"]
    complete, problems = check_catalog(catalog, [sku])
    assert not problems and list(complete) == [sku]


def test_a_sku_never_touches_the_staging_of_a_sku_whose_name_extends_it(tmp_path):
    """Regression: cleaning ``tee``'s leftovers matched ``tee.*`` and deleted the staging folder ``tee.v2``
    was being written in (under its own lock), which then committed an entry with missing files."""
    products, catalog = tmp_path / "products", tmp_path / "catalog"
    for sku in ("tee", "tee.v2"):
        d = products / sku
        d.mkdir(parents=True)
        save_image(d / "front.png", draw_tee(128)[0])
        (d / "product.yaml").write_text("backgrounds: [white]\n")
    base = get_engine("classic")
    entered, release = threading.Event(), threading.Event()

    class PausingEngine:
        """The classic engine, pausing in ``tee.v2``'s segmentation (its staging folder is half written)."""

        name = base.name

        def __getattr__(self, attr):
            return getattr(base, attr)

        def find_subject(self, image, product):
            if product.sku == "tee.v2":
                entered.set()
                release.wait(30)
            return base.find_subject(image, product)

    result = {}
    t = threading.Thread(target=lambda: result.setdefault("v2", process_sku(
        load_product(products / "tee.v2", root=products), catalog, PausingEngine(), render_options())))
    t.start()
    try:
        assert entered.wait(30)
        staged = list((catalog / STAGING_DIR).iterdir())
        assert len(staged) == 1 and staged[0].name.startswith("tee.v2.")
        assert process_sku(load_product(products / "tee", root=products), catalog, base,
                           render_options()).status == "ok"
        assert staged[0].is_dir(), "tee's run deleted tee.v2's staging folder"
    finally:
        release.set()
        t.join()
    assert result["v2"].status == "ok", result["v2"].error
    complete, problems = check_catalog(catalog, ["tee", "tee.v2"])
    assert not problems and sorted(complete) == ["tee", "tee.v2"]


@pytest.mark.slow
def test_two_vitrine_runs_at_once(tmp_path):
    """End to end: two ``vitrine run`` processes (Prefect flows) on one catalog at the same moment."""
    products, catalog = tmp_path / "products", tmp_path / "catalog"
    skus = make_products(products, 6, size=512)  # the 2000 px main may enlarge it at most 6x
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "GLOG_minloglevel": "2"}
    cmd = [sys.executable, "-m", "flows.cli", "run", str(products), "--catalog", str(catalog),
           "--no-progress"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, f"exit {p.returncode}\n{out}\n{err[-3000:]}"
    reports = [json.loads(p.read_text()) for p in sorted((catalog / "_reports").glob("*.json"))]
    assert len(reports) == 2
    ok_by = {sku: [i for i, r in enumerate(reports) for e in r["entries"]
                   if e["sku"] == sku and e["status"] == "ok"] for sku in skus}
    assert all(len(v) == 1 for v in ok_by.values()), ok_by
    complete, problems = check_catalog(catalog, skus)
    assert not problems and sorted(complete) == skus
    record_figures("concurrency_cli", {"skus": len(skus), "written_twice": 0, "runs": 2,
                                       "ok_per_run": [r["counts"]["ok"] for r in reports]})
