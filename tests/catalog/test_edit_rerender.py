"""Edit versions across a re-render of their SKU: carried over when what they were made from is unchanged,
kept as stale history (files under ``history/``, records in ``stale_edits[]``) when it changed; never lost, and
``vitrine verify`` stays ok. The commit stays staging + rename: a fault before the commit leaves the old entry,
edits included, as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import pipelines.catalog.render as render_module
from flows.cli import main
from pipelines.catalog.edits import edit_output
from pipelines.catalog.manifest import read_manifest, validate_manifest
from pipelines.catalog.options import RenderOptions
from pipelines.catalog.render import process_sku
from pipelines.catalog.review import record_decision
from pipelines.catalog.verify import entry_file_problems, verify_entry
from pipelines.edit.kontext import EditParams
from pipelines.engines.registry import get_engine
from pipelines.imageio import save_image, sha256_file
from pipelines.product import load_product
from tests.helpers.edits import WarmerEditor
from pipelines.samples import draw_tee
from tests.helpers.reliability import check_catalog

OPTIONS = RenderOptions(canvas=192, lifestyle_size=(144, 180))
SPEC = "backgrounds: [white, studio]\n"
FAST = EditParams(steps=2)
EDITS = ("main.edit-1.png", "main.edit-1.jpg", "lifestyle-studio-s0.edit-1.png", "lifestyle-studio-s0.edit-2.png")


def _render(products: Path, catalog: Path, force: bool = False):
    r = process_sku(load_product(products / "tee", root=products), catalog, get_engine("classic"), OPTIONS,
                    force=force)
    assert r.status == "ok", r.error
    return r


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A rendered tee with four edit versions: main.edit-1 (+ its JPEG export, approved), and a chain
    lifestyle edit-1 -> edit-2."""
    root = tmp_path_factory.mktemp("edits")
    products, catalog = root / "products", root / "catalog"
    (products / "tee").mkdir(parents=True)
    save_image(products / "tee" / "front.png", draw_tee(256)[0])
    (products / "tee" / "product.yaml").write_text(SPEC)
    _render(products, catalog)
    ed = WarmerEditor()
    first = edit_output(catalog, "tee", "main.png", "soft shadow", ed, params=FAST)
    assert first.new_output == "main.edit-1.png" and first.exports == ["main.edit-1.jpg"]
    record_decision(catalog, "tee", "main.edit-1.png", "approve", reviewer="ana")
    one = edit_output(catalog, "tee", "lifestyle-studio-s0.png", "warmer light", ed, params=FAST)
    edit_output(catalog, "tee", one.new_output, "even warmer", ed, params=FAST)
    return root


@pytest.fixture()
def setup(template, tmp_path):
    root = shutil.copytree(template, tmp_path / "t", ignore=shutil.ignore_patterns(".locks"))
    products, catalog = root / "products", root / "catalog"
    before = read_manifest(catalog / "tee" / "manifest.json")
    return products, catalog, before


def _outputs(manifest) -> dict[str, dict]:
    return {o["file"]: o for o in manifest["outputs"]}


def _verify_ok(catalog: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["verify", str(catalog)]) == 0, capsys.readouterr().out
    d = catalog / "tee"
    assert entry_file_problems(d) == [] and all(r["ok"] for r in verify_entry(d))


def test_edits_of_unchanged_outputs_are_carried_over_by_a_re_render(setup, capsys):
    products, catalog, before = setup
    old = _outputs(before)
    # The product folder changed (a new background), but main.png and the studio scene come out byte-identical.
    (products / "tee" / "product.yaml").write_text("backgrounds: [white, studio, texture]\n")
    r = _render(products, catalog)
    after = read_manifest(catalog / "tee" / "manifest.json")
    validate_manifest(after)
    now = _outputs(after)
    assert now["main.png"]["sha256"] == old["main.png"]["sha256"]
    assert "lifestyle-texture-s0.png" in now  # really re-rendered
    for f in EDITS:
        assert now[f] == old[f], f  # the same record: edit block, review, sha256
        assert sha256_file(catalog / "tee" / f) == old[f]["sha256"]
        assert f in r.outputs
    assert now["main.edit-1.png"]["review"]["status"] == "approved"
    assert after.get("stale_edits", []) == []
    assert after["review"]["counts"]["approved"] == before["review"]["counts"]["approved"] == 1  # main.edit-1
    assert any(m["id"] == WarmerEditor.model_id for m in after["models"])
    _verify_ok(catalog, capsys)
    # ... and a --force re-render of the same product carries them again.
    _render(products, catalog, force=True)
    assert {f: o["sha256"] for f, o in _outputs(read_manifest(catalog / "tee" / "manifest.json")).items()
            if f in EDITS} == {f: old[f]["sha256"] for f in EDITS}
    complete, problems = check_catalog(catalog, ["tee"])
    assert problems == [] and "tee" in complete


def test_edits_of_changed_outputs_are_kept_as_stale_history(setup, capsys):
    products, catalog, before = setup
    old = _outputs(before)
    save_image(products / "tee" / "front.png", draw_tee(256, color=(150, 40, 40))[0])  # every output changes
    _render(products, catalog)
    after = read_manifest(catalog / "tee" / "manifest.json")
    validate_manifest(after)
    now = _outputs(after)
    assert now["main.png"]["sha256"] != old["main.png"]["sha256"]
    assert not any(o["kind"] == "edit" for o in after["outputs"])  # not shown as current
    assert not any(f in now for f in EDITS)
    stale = {s["stale"]["original_file"]: s for s in after["stale_edits"]}
    assert set(stale) == set(EDITS)
    for f in EDITS:
        s = stale[f]
        assert s["file"].startswith("history/") and s["file"].endswith("/" + f)
        assert s["sha256"] == old[f]["sha256"] == sha256_file(catalog / "tee" / s["file"])
        assert s["record"] == old[f]  # the record as it was, edit block and review included
        root = "main.png" if f.startswith("main") else "lifestyle-studio-s0.png"
        assert s["stale"]["source"] == root
        assert s["stale"]["source_sha256"] == old[root]["sha256"]
        assert s["stale"]["current_sha256"] == now[root]["sha256"]
        assert s["stale"]["content_hash"] == before["content_hash"]
    assert stale["main.edit-1.png"]["review"]["status"] == "approved"  # the reviewer's decision is kept too
    _verify_ok(catalog, capsys)
    complete, problems = check_catalog(catalog, ["tee"])
    assert problems == [] and "tee" in complete
    # A new edit never reuses a stale version's name; a further re-render keeps the history.
    new = edit_output(catalog, "tee", "main.png", "soft shadow", WarmerEditor(), params=FAST)
    assert new.new_output == "main.edit-2.png"
    _render(products, catalog, force=True)
    again = read_manifest(catalog / "tee" / "manifest.json")
    assert [s["file"] for s in again["stale_edits"]] == [s["file"] for s in after["stale_edits"]]
    assert "main.edit-2.png" in _outputs(again)  # force re-render, same pixels: the new edit is carried
    _verify_ok(catalog, capsys)


def _tree(d: Path) -> dict[str, str]:
    return {p.relative_to(d).as_posix(): sha256_file(p) for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fault", ["before-commit", "while-carrying"])
def test_a_fault_during_the_re_render_leaves_the_old_entry_and_its_edits(setup, monkeypatch, fault):
    products, catalog, _ = setup
    sku_dir = catalog / "tee"
    tree = _tree(sku_dir)
    save_image(products / "tee" / "front.png", draw_tee(256, color=(150, 40, 40))[0])

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if fault == "before-commit":  # everything staged, then the process dies before the rename
        monkeypatch.setattr(render_module, "commit_entry", boom)
    else:
        import pipelines.catalog.edit_carry as carry_module

        monkeypatch.setattr(carry_module, "link_or_copy", boom)
    r = process_sku(load_product(products / "tee", root=products), catalog, get_engine("classic"), OPTIONS)
    assert r.status == "failed" and "no space left" in r.error.lower()
    assert _tree(sku_dir) == tree  # the live entry is untouched, every edit with it
    assert not any((catalog / ".staging").iterdir())
    monkeypatch.undo()
    _render(products, catalog)
    assert {s["stale"]["original_file"] for s in read_manifest(sku_dir / "manifest.json")["stale_edits"]} == set(EDITS)


# -- SIGKILL at a random moment of the re-render: the edits are never lost ------------------------------------
KILL_SEED = 20261203
KILL_TRIALS = 6


def _edits_kept(manifest: dict, old: dict[str, dict]) -> list[str]:
    """The edit files of ``old`` that ``manifest`` no longer holds, current or stale, with their sha256."""
    held = {o["file"]: o["sha256"] for o in manifest["outputs"]}
    held.update({s["stale"]["original_file"]: s["sha256"] for s in manifest.get("stale_edits", [])})
    return [f for f in EDITS if held.get(f) != old[f]["sha256"]]


@pytest.mark.slow
def test_sigkill_during_a_re_render_never_loses_the_edits(template, tmp_path):
    """Kill a worker re-rendering the SKU (half the trials with the same pixels, so the edits are carried; half
    with a changed photo, so they become stale) at a random moment; after each kill the catalog holds only
    complete entries, and the entry (after the next run restores a trashed one) still holds every edit."""
    import random
    import time

    from tests.helpers.reliability import Worker

    old = _outputs(read_manifest(template / "catalog" / "tee" / "manifest.json"))
    options = {"canvas": OPTIONS.canvas, "lifestyle_size": list(OPTIONS.lifestyle_size)}
    rng, spans, failures = random.Random(KILL_SEED), {}, []
    for trial in range(KILL_TRIALS):
        changed = trial % 2 == 1
        root = shutil.copytree(template, tmp_path / f"t{trial}", ignore=shutil.ignore_patterns(".locks"))
        products, catalog = root / "products", root / "catalog"
        if changed:
            save_image(products / "tee" / "front.png", draw_tee(256, color=(150, 40, 40))[0])
        worker = Worker(products, catalog, ["tee"], options=options, force=True)
        worker.wait_ready()
        start = time.perf_counter()
        worker.go()
        if changed not in spans:  # the first trial of each kind runs to the end: its length bounds the delays
            assert worker.wait() == 0
            spans[changed] = time.perf_counter() - start
        else:
            time.sleep(rng.uniform(0.0, spans[changed]))
            worker.kill()
        _, problems = check_catalog(catalog, ["tee"])
        # The next run restores an entry a kill left in the trash, or finishes the re-render.
        r = process_sku(load_product(products / "tee", root=products), catalog, get_engine("classic"), OPTIONS)
        assert r.status in ("ok", "skipped"), r.error
        manifest = read_manifest(catalog / "tee" / "manifest.json")
        lost = _edits_kept(manifest, old)
        if problems or lost:
            failures.append({"trial": trial, "problems": problems, "lost": lost})
        assert entry_file_problems(catalog / "tee") == []
    assert failures == []
