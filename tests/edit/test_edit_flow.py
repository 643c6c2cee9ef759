"""The edit batch: planning (instruction or review requests), applying jobs and reporting back to the
decisions file; and, marked slow, ``vitrine run`` with a try-on SKU and ``vitrine edit`` through Prefect."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from pipelines.catalog.edit_batch import EditJob, apply_edit_job, plan_edits, report_markdown, write_edit_report
from pipelines.edit.kontext import EditParams
from pipelines.errors import InputError
from pipelines.catalog.manifest import read_manifest
from pipelines.catalog.review import pending_edit_requests, read_decisions, record_decision
from tests.helpers.tryon import fast_settings, tiny_flux_root, tiny_kontext

pytestmark = pytest.mark.filterwarnings("ignore:.*FluxPosEmbed:FutureWarning")


@pytest.fixture(scope="module")
def template_catalog(tmp_path_factory):
    from tests.helpers.review import build_review_catalog

    return build_review_catalog(tmp_path_factory.mktemp("edit-flow"))


@pytest.fixture()
def catalog(template_catalog, tmp_path):
    return shutil.copytree(template_catalog, tmp_path / "catalog", ignore=shutil.ignore_patterns(".locks"))


def test_plan_with_an_instruction_picks_the_newest_lifestyle_versions(catalog):
    jobs = plan_edits(catalog, instruction="marble floor")
    assert [(j.sku, j.output) for j in jobs] == [("tee-navy", "lifestyle-studio-s0.png")]  # tote has white only
    assert jobs[0].expected_sha256 and jobs[0].decision_id is None
    named = plan_edits(catalog, instruction="marble floor", skus=["tote-canvas"], outputs=["main.png"])
    assert [(j.sku, j.output) for j in named] == [("tote-canvas", "main.png")]
    with pytest.raises(InputError, match="ghost") as err:
        plan_edits(catalog, instruction="x", skus=["ghost"])
    assert err.value.key == "sku"
    with pytest.raises(InputError, match="main.jpg"):
        plan_edits(catalog, instruction="x", outputs=["main.jpg"])  # an export
    with pytest.raises(InputError, match="empty"):
        plan_edits(catalog, instruction=" ")


def test_review_requests_are_applied_and_reported_back(catalog):
    d = record_decision(catalog, "tee-navy", "lifestyle-studio-s0.png", "request-edit", instruction="warmer light")
    record_decision(catalog, "tote-canvas", "main.png", "request-edit", instruction="add a soft shadow")
    jobs = plan_edits(catalog)
    assert [(j.sku, j.output, j.instruction) for j in jobs] == [
        ("tee-navy", "lifestyle-studio-s0.png", "warmer light"), ("tote-canvas", "main.png", "add a soft shadow")]
    assert jobs[0].decision_id == d.id
    only = plan_edits(catalog, skus=["tee-navy"])
    entry = apply_edit_job(catalog, only[0], editor=tiny_kontext(), settings=fast_settings())
    assert entry["status"] == "applied" and entry["new_output"] == "lifestyle-studio-s0.edit-1.png"
    events = [e for e in read_decisions(catalog) if e["event"] == "edit-result"]
    assert events[-1]["decision_id"] == d.id and events[-1]["result"] == "applied"
    assert events[-1]["new_output"] == "lifestyle-studio-s0.edit-1.png"
    assert [r.sku for r in pending_edit_requests(catalog)] == ["tote-canvas"]  # the applied one is done
    m = read_manifest(catalog / "tee-navy" / "manifest.json")
    new = {o["file"]: o for o in m["outputs"]}["lifestyle-studio-s0.edit-1.png"]
    assert new["edit"]["decision_id"] == d.id and new["edit"]["instruction"] == "warmer light"
    # the reviewer's source output keeps its review; the original is still listed
    assert {o["file"]: o for o in m["outputs"]}["lifestyle-studio-s0.png"]["review"]["status"] == "edit-requested"


def test_a_failed_request_is_recorded_and_stays_pending(catalog):
    record_decision(catalog, "tote-canvas", "main.png", "request-edit", instruction="add a soft shadow")
    (job,) = plan_edits(catalog)
    entry = apply_edit_job(catalog, job, commercial=True, editor=tiny_kontext(), settings=fast_settings())
    assert entry["status"] == "failed" and "FLUX.1-schnell" in entry["error"] and "SDXL" in entry["error"]
    (event,) = [e for e in read_decisions(catalog) if e["event"] == "edit-result"]
    assert event["result"] == "failed" and "commercial" in event["error"]
    (still,) = pending_edit_requests(catalog)
    assert still.failed_attempts == 1
    # a request made for pixels that were since replaced is refused, not applied to other pixels
    stale = EditJob("tote-canvas", "main.png", "x", expected_sha256="f" * 64)
    assert "changed since" in apply_edit_job(catalog, stale, editor=tiny_kontext(), settings=fast_settings())["error"]


def test_edit_report_is_written_and_its_markdown_escaped(tmp_path):
    from datetime import UTC, datetime

    entries = [{"sku": "a|b", "output": "x.png", "instruction": "<script>", "status": "failed", "new_output": None,
                "error": "boom", "exports": [], "decision_id": None, "expected_sha256": None}]
    path = write_edit_report(tmp_path, entries, instruction="<script>", started_at=datetime.now(UTC))
    data = json.loads(path.read_text())
    assert data["counts"] == {"applied": 0, "failed": 1} and path.parent.name == "_reports"
    md = report_markdown(path, entries)
    assert "<script>" not in md and "a\\|b" in md


def test_person_edit_on_a_person_photo_keeps_only_the_clothes(tmp_path, astronaut_rgb):
    """The kept subject is a whole person (an on-model photo); "make the model smile" keeps what they wear."""
    from pipelines.catalog.options import RenderOptions
    from pipelines.catalog.render import process_sku
    from pipelines.catalog.edits import edit_output
    from pipelines.engines.registry import get_engine
    from pipelines.imageio import save_image
    from pipelines.product import load_product

    d = tmp_path / "p" / "look"
    d.mkdir(parents=True)
    save_image(d / "front.png", np.asarray(Image.fromarray(astronaut_rgb).resize((256, 256))))
    (d / "product.yaml").write_text("garment_type: upper\nbackgrounds: [studio]\n", encoding="utf-8")
    r = process_sku(load_product(d), tmp_path / "c", get_engine("classic"), RenderOptions(canvas=400, lifestyle_size=(200, 240)))
    assert r.status == "ok", r.error
    ed, model = tiny_kontext()
    out = edit_output(tmp_path / "c", "look", "lifestyle-studio-s0.png", "make the model smile", ed, model=model,
                      params=EditParams(steps=2))
    g = out.record["edit"]["garment"]
    assert g["recomposited"] and g["targets_person"] and g["mask"].startswith("worn-garment")
    sku_dir = tmp_path / "c" / "look"
    person = np.asarray(Image.open(sku_dir / "work/lifestyle-studio-s0.product-mask.png")) == 255
    kept = np.asarray(Image.open(sku_dir / out.record["preserve_mask"])) > 0
    assert 0 < kept.sum() < 0.8 * person.sum()  # the clothes, not the whole person
    a = np.asarray(Image.open(sku_dir / out.new_output).convert("RGB"))
    b = np.asarray(Image.open(sku_dir / "lifestyle-studio-s0.png").convert("RGB"))
    assert np.array_equal(a[kept], b[kept]) and not np.array_equal(a[person & ~kept], b[person & ~kept])


@pytest.mark.slow
def test_cli_run_tryon_and_edit_through_prefect(prefect_harness, tmp_path, astronaut_rgb, drawn_products, capsys):
    """``vitrine run`` makes a try-on SKU (tiny flux: FLUX.1 Fill) with an identity preset; ``vitrine edit``
    applies an instruction to it and then the review requests, keeping originals and linking versions."""
    from flows.cli import main
    from pipelines.imageio import save_image

    products, catalog = tmp_path / "products", tmp_path / "catalog"
    look = products / "look"
    look.mkdir(parents=True)
    save_image(look / "person.png", np.asarray(Image.fromarray(astronaut_rgb).resize((192, 192))))
    save_image(look / "tee.png", np.asarray(Image.fromarray(drawn_products["tee"][0]).resize((192, 192))))
    (look / "product.yaml").write_text("title: Navy tee\ngarment_type: upper\n", encoding="utf-8")
    (products / "_identities").mkdir()
    (products / "_identities" / "ana.yaml").write_text("seed: 77\nprompt: woman, short hair\n", encoding="utf-8")
    root = str(tiny_flux_root())
    import os

    env = {"VITRINE_GEN_STEPS": "2", "VITRINE_GEN_SEAM_STEPS": "2", "VITRINE_GEN_DEVICE": "cpu",
           "VITRINE_GEN_WORK_SIDE": "32"}  # the tiny models' native side
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["run", str(products), "--catalog", str(catalog), "--engine", "flux", "--model-root", root,
                     "--identity", "ana", "--no-progress"]) == 0
        m = read_manifest(catalog / "look" / "manifest.json")
        (out,) = m["outputs"]
        assert out["file"] == "tryon-tee-s77.png" and out["tryon"]["method"] == "fill" and out["seed"] == 77
        assert m["parameters"]["render"]["identity"]["name"] == "ana"
        assert main(["verify", str(catalog)]) == 0
        capsys.readouterr()

        assert main(["edit", str(catalog), "--instruction", "evening light", "--model-root", root]) == 0
        printed = capsys.readouterr().out
        assert "look/tryon-tee-s77.png -> tryon-tee-s77.edit-1.png" in printed and "1 applied, 0 failed" in printed
        record_decision(catalog, "look", "tryon-tee-s77.edit-1.png", "request-edit", instruction="make the model smile")
        assert main(["edit", str(catalog), "--sku", "look", "--model-root", root]) == 0
        assert "tryon-tee-s77.edit-2.png" in capsys.readouterr().out
        assert pending_edit_requests(catalog) == []
        m = read_manifest(catalog / "look" / "manifest.json")
        outs = {o["file"]: o for o in m["outputs"]}
        assert outs["tryon-tee-s77.png"]["sha256"] == out["sha256"]  # original kept
        assert outs["tryon-tee-s77.edit-1.png"]["derived_from"] == "tryon-tee-s77.png"
        assert outs["tryon-tee-s77.edit-2.png"]["derived_from"] == "tryon-tee-s77.edit-1.png"
        assert main(["verify", str(catalog)]) == 0  # edits re-composited the garment: they verify too
        assert main(["edit", str(catalog), "--sku", "ghost", "--instruction", "x"]) == 2
        assert main(["edit", str(catalog), "--instruction", "x", "--model-root", str(tmp_path / "empty")]) == 2
        err = capsys.readouterr().err
        assert "FLUX.1-Kontext-dev" in err and "hf download" in err
        assert main(["run", str(products), "--catalog", str(catalog), "--identity", "nobody", "--no-progress"]) == 2
        assert "identity preset 'nobody' not found" in capsys.readouterr().err
        assert main(["edit", str(catalog), "--instruction", "x", "--commercial", "--model-root", root]) == 1
        assert "FLUX.1-schnell" in capsys.readouterr().err
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
