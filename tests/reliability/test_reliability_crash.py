"""Reliability, crashes: SIGKILL a batch worker at random moments; the catalog never holds a partial entry.

Each trial starts a worker subprocess that renders a few SKUs with `process_sku`, kills it with SIGKILL
after a random delay (no handler runs, nothing is flushed), then checks:

1. everything visible in the catalog (outside ``.staging``, ``.trash``, ``.locks``) is a complete entry:
   the manifest parses and validates, every file it lists exists with its sha256, no other file;
2. a re-run completes every SKU and redoes nothing that was finished: entries complete after the kill
   are skipped as unchanged, byte for byte.

Half of the trials start from a complete catalog and re-render it with ``force``, so the kill can also
land while an old entry is being replaced (the two-rename commit and the trash).
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pytest

from pipelines.catalog.render import process_sku
from pipelines.catalog.store import STAGING_DIR, TRASH_DIR
from pipelines.catalog.verify import verify_entry
from pipelines.engines.registry import get_engine
from pipelines.imageio import sha256_file
from pipelines.catalog.manifest import MANIFEST_NAME
from pipelines.product import load_product
from tests.helpers.reliability import Worker, check_catalog, make_products, record_figures, render_options

#: Seed of the random kill delays: a failing trial can be replayed exactly.
SEED = 20261122
N_SKUS = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Products, a complete reference catalog the ``force`` trials start from, and the batch's duration.

    The reference is rendered by an uninterrupted worker, timed from its start signal to its last SKU:
    the kill delays are drawn up to that duration, so they land anywhere in the batch.
    """
    root = tmp_path_factory.mktemp("crash")
    products = root / "products"
    skus = make_products(products, N_SKUS)
    reference = root / "reference"
    worker = Worker(products, reference, skus)
    worker.wait_ready()
    start = time.perf_counter()
    worker.go()
    assert worker.wait() == 0
    duration = time.perf_counter() - start
    assert [r["status"] for r in worker.results()] == ["ok"] * N_SKUS
    return root, products, skus, reference, get_engine("classic"), duration


def run_trial(trial: int, rng: random.Random, root: Path, products: Path, skus: list[str], reference: Path,
              engine, max_delay: float) -> dict:
    """One kill-and-recover trial; returns what happened and every problem found."""
    force = trial % 2 == 1
    catalog = root / f"catalog-{trial:03d}"
    if force:
        shutil.copytree(reference, catalog)
    before, _ = check_catalog(catalog, skus)
    order = skus[trial % len(skus):] + skus[: trial % len(skus)]  # vary which SKU is first
    worker = Worker(products, catalog, order, force=force)
    worker.wait_ready()
    delay = rng.uniform(0.0, max_delay)
    worker.go()
    time.sleep(delay)
    worker.kill()
    reported_ok = {r["sku"] for r in worker.results() if r["status"] == "ok"}

    # 1. What the kill left behind.
    staging = catalog / STAGING_DIR
    mid_write = staging.is_dir() and any(staging.iterdir())
    trash = catalog / TRASH_DIR
    in_trash = trash.is_dir() and any(trash.iterdir())
    complete, problems = check_catalog(catalog, skus)
    problems += [f"{s}: reported ok by the worker but not complete" for s in reported_ok - set(complete)]

    # 2. Re-run: finishes everything, redoes nothing finished.
    rerun = {}
    for sku in skus:
        product = load_product(products / sku, root=products)
        rerun[sku] = process_sku(product, catalog, engine, render_options())
    redone = []
    for sku, sha in complete.items():
        r = rerun[sku]
        unchanged = sha256_file(catalog / sku / MANIFEST_NAME) == sha
        if r.status != "skipped" or r.reason != "unchanged" or not unchanged:
            redone.append(sku)
    # In a force trial every SKU was finished before the kill (old or new entry): none may need redoing.
    lost = [s for s in before if rerun[s].status != "skipped"] if force else []
    final, final_problems = check_catalog(catalog, skus)
    problems += [f"after re-run: {p}" for p in final_problems]
    lost += [s for s in skus if s not in final and s not in lost]
    problems += [f"{s}: re-run failed: {rerun[s].error}" for s in skus if rerun[s].status == "failed"]
    for sku in final:
        problems += [f"{sku}/{v['file']}: product pixels changed" for v in verify_entry(catalog / sku)
                     if v["identical_fraction"] != 1.0]
    shutil.rmtree(catalog, ignore_errors=True)
    return {
        "trial": trial, "force": force, "delay_s": round(delay, 3), "finished_before_kill": len(complete),
        "mid_write": mid_write, "in_trash": in_trash, "redone": redone, "lost": lost, "problems": problems,
    }


def run_trials(n: int, setup) -> dict:
    root, products, skus, reference, engine, duration = setup
    rng = random.Random(SEED)
    trials = [run_trial(t, rng, root, products, skus, reference, engine, duration) for t in range(n)]
    return {
        "trials": n,
        "survived": sum(1 for t in trials if not (t["problems"] or t["redone"] or t["lost"])),
        "skus_lost": sum(len(t["lost"]) for t in trials),
        "finished_skus_redone": sum(len(t["redone"]) for t in trials),
        "kills_mid_write": sum(t["mid_write"] for t in trials),
        "kills_mid_write_over_an_old_entry": sum(t["force"] and t["mid_write"] for t in trials),
        "skus_per_trial": len(skus),
        "batch_seconds": round(duration, 2),
        "seed": SEED,
        "failures": [t for t in trials if t["problems"] or t["redone"] or t["lost"]],
    }


def _assert_all_survived(figures: dict) -> None:
    assert not figures["failures"], "\n".join(
        f"trial {t['trial']} (force={t['force']}, kill after {t['delay_s']} s): problems {t['problems']}, "
        f"redone {t['redone']}, lost {t['lost']}"
        for t in figures["failures"]
    )
    assert figures["survived"] == figures["trials"] and figures["skus_lost"] == 0
    assert figures["finished_skus_redone"] == 0


def test_sigkill_during_batch_quick(setup):
    figures = run_trials(4, setup)
    record_figures("crash_quick", {k: v for k, v in figures.items() if k != "failures"})
    _assert_all_survived(figures)


@pytest.mark.slow
def test_sigkill_during_batch_many_trials(setup):
    n = max(20, int(os.environ.get("VITRINE_CRASH_TRIALS", "30")))
    figures = run_trials(n, setup)
    record_figures("crash", {k: v for k, v in figures.items() if k != "failures"})
    _assert_all_survived(figures)
    assert figures["kills_mid_write"] >= n // 4, "the kills should often land while a SKU is being written"


def test_entry_left_in_trash_by_a_crash_is_restored_not_redone(setup, tmp_path):
    """A kill between the two renames of a replacement leaves no entry, only the old one in .trash."""
    _, products, skus, reference, engine, _ = setup
    catalog = tmp_path / "catalog"
    shutil.copytree(reference, catalog)
    sku = skus[0]
    sha = sha256_file(catalog / sku / MANIFEST_NAME)
    (catalog / TRASH_DIR).mkdir(exist_ok=True)
    os.replace(catalog / sku, catalog / TRASH_DIR / f"{sku}.0123abcd")  # the first rename, then the kill
    result = process_sku(load_product(products / sku, root=products), catalog, engine, render_options())
    assert result.status == "skipped" and result.reason == "unchanged"
    assert sha256_file(catalog / sku / MANIFEST_NAME) == sha
    assert not any((catalog / TRASH_DIR).iterdir())


def test_half_deleted_trash_is_not_restored(setup, tmp_path):
    """A kill while the trash is being deleted leaves a partial copy: it is cleaned, never put back."""
    _, products, skus, reference, engine, _ = setup
    catalog = tmp_path / "catalog"
    sku = skus[1]
    shutil.copytree(reference / sku, catalog / TRASH_DIR / f"{sku}.0123abcd")
    (catalog / TRASH_DIR / f"{sku}.0123abcd" / "main.png").unlink()
    result = process_sku(load_product(products / sku, root=products), catalog, engine, render_options())
    assert result.status == "ok"
    complete, problems = check_catalog(catalog, skus)
    assert not problems and sku in complete
    assert not (catalog / TRASH_DIR / f"{sku}.0123abcd").exists()
