"""The licence guard: FLUX.1-dev derivatives are refused for commercial work with a message naming the
licence and the commercial alternatives (FLUX.1-schnell, SDXL); licences are recorded per model."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.errors import InputError
from pipelines.models.licence import (
    LicenceError,
    check_commercial_use,
    licence_of,
    merge_model_records,
    model_record,
)

DEV_FAMILY = [
    "black-forest-labs/FLUX.1-dev",
    "black-forest-labs/FLUX.1-Fill-dev",
    "black-forest-labs/FLUX.1-Kontext-dev",
    "black-forest-labs/FLUX.1-Canny-dev",
    "black-forest-labs/FLUX.1-Depth-dev",
    "black-forest-labs/FLUX.1-Redux-dev",  # not registered: judged by its id
    "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro",
    "InstantX/FLUX.1-dev-Controlnet-Canny",
    "XLabs-AI/flux-controlnet-depth-v3-FLUX.1-dev",  # not registered either
    "city96/FLUX.1-dev-gguf",
]


@pytest.mark.parametrize("model_id", DEV_FAMILY)
def test_every_flux_dev_derivative_is_non_commercial(model_id):
    info = licence_of(model_id)
    assert info.commercial is False and info.licence == "FLUX.1-dev-Non-Commercial"


@pytest.mark.parametrize("model_id", ["black-forest-labs/FLUX.1-schnell", "stabilityai/stable-diffusion-xl-base-1.0",
                                      "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
                                      "xinsir/controlnet-openpose-sdxl-1.0"])
def test_schnell_and_sdxl_are_commercial(model_id):
    info = licence_of(model_id)
    assert info.commercial is True and info.source == "registry"
    assert check_commercial_use([model_id], commercial=True)[0].id == model_id


def test_unknown_models_are_not_assumed_commercial():
    info = licence_of("someone/mystery-model")
    assert (info.licence, info.commercial, info.source) == ("unknown", False, "unknown")
    with pytest.raises(LicenceError, match="licence: unknown"):
        check_commercial_use(["someone/mystery-model"], commercial=True)


@pytest.mark.parametrize("model_id", ["black-forest-labs/FLUX.1-Kontext-dev", "black-forest-labs/FLUX.1-Fill-dev",
                                      "black-forest-labs/FLUX.1-Redux-dev",
                                      "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro"])
def test_commercial_refusal_names_the_model_licence_and_alternatives(model_id, tmp_path):
    where = tmp_path / "product.yaml"
    with pytest.raises(LicenceError) as err:
        check_commercial_use([model_id, "black-forest-labs/FLUX.1-schnell"], commercial=True, what="the edit",
                             subject="SKU tee", path=where)
    e = err.value
    msg = str(e)
    assert isinstance(e, InputError) and e.key == "commercial" and e.path == str(where)
    assert msg.startswith(f"{where} [commercial]: SKU tee is marked commercial: true, but the edit needs {model_id}")
    assert "FLUX.1-dev-Non-Commercial" in msg
    assert "FLUX.1-schnell (black-forest-labs/FLUX.1-schnell, Apache-2.0)" in msg
    assert "SDXL (stabilityai/stable-diffusion-xl-base-1.0, CreativeML-OpenRAIL++-M)" in msg
    assert [m.id for m in e.models] == [model_id]  # schnell is fine
    assert e.alternatives[:2] == ["black-forest-labs/FLUX.1-schnell", "stabilityai/stable-diffusion-xl-base-1.0"]


def test_non_commercial_work_may_use_dev_models_and_gets_their_licences():
    infos = check_commercial_use(DEV_FAMILY[:3], commercial=False)
    assert [i.licence for i in infos] == ["FLUX.1-dev-Non-Commercial"] * 3


def test_model_records_carry_the_licence_and_merge_without_duplicates():
    rec = model_record("black-forest-labs/FLUX.1-Kontext-dev", role="edit", source="/m/k")
    assert rec == {"id": "black-forest-labs/FLUX.1-Kontext-dev", "revision": None,
                   "licence": "FLUX.1-dev-Non-Commercial", "commercial": False, "licence_source": "registry",
                   "role": "edit", "source": "/m/k"}
    merged = merge_model_records([{"id": "a/b", "revision": None, "licence": "MIT"}], [rec, dict(rec)])
    assert [m["id"] for m in merged] == ["a/b", "black-forest-labs/FLUX.1-Kontext-dev"]


class _NeverCalledEditor:
    model_id = "black-forest-labs/FLUX.1-Kontext-dev"

    def __call__(self, *a, **k):  # pragma: no cover - the guard must refuse first
        raise AssertionError("the model ran for a commercial SKU")


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory):
    from tests.helpers.review import build_review_catalog

    return build_review_catalog(tmp_path_factory.mktemp("licence"))


def test_kontext_edit_of_a_commercial_batch_is_refused_before_the_model_runs(small_catalog, tmp_path):
    import json
    import shutil

    from pipelines.catalog.edits import edit_output

    catalog = shutil.copytree(small_catalog, tmp_path / "c")
    before = (catalog / "tee-navy" / "manifest.json").read_bytes()
    with pytest.raises(LicenceError, match="FLUX.1-schnell .* and SDXL") as err:
        edit_output(catalog, "tee-navy", "lifestyle-studio-s0.png", "marble floor", _NeverCalledEditor(),
                    commercial=True)
    assert "the batch (--commercial)" in str(err.value) and "Kontext edit" in str(err.value)
    # a SKU marked commercial in its product.yaml (recorded in its manifest) is refused the same way
    m = json.loads(before)
    m["product"]["commercial"] = True
    (catalog / "tee-navy" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(LicenceError, match="SKU tee-navy is marked commercial"):
        edit_output(catalog, "tee-navy", "lifestyle-studio-s0.png", "marble floor", _NeverCalledEditor())
    assert not list((catalog / "tee-navy").glob("*.edit-*"))


def test_batch_commercial_flag_reaches_every_sku(tmp_path, drawn_products):
    """``vitrine run --commercial`` (RenderOptions.commercial): the manifest says commercial, and a try-on that
    asks for a dev model is refused even though its product.yaml does not say commercial."""
    from pipelines.catalog.options import RenderOptions
    from pipelines.catalog.render import process_sku
    from pipelines.engines.registry import get_engine
    from pipelines.imageio import save_image
    from pipelines.catalog.manifest import read_manifest
    from pipelines.product import load_product

    d = tmp_path / "p" / "tote"
    d.mkdir(parents=True)
    save_image(d / "front.png", drawn_products["tote"][0])
    (d / "product.yaml").write_text("backgrounds: [white]\n", encoding="utf-8")
    opts = RenderOptions(canvas=128, lifestyle_size=(96, 128), commercial=True)
    r = process_sku(load_product(d), tmp_path / "c", get_engine("classic"), opts)
    assert r.status == "ok", r.error
    m = read_manifest(tmp_path / "c" / "tote" / "manifest.json")
    assert m["product"]["commercial"] is True and m["parameters"]["render"]["commercial"] is True
    look = tmp_path / "p" / "look"
    look.mkdir()
    save_image(look / "person.png", np.full((64, 64, 3), 90, np.uint8))
    save_image(look / "tee.png", drawn_products["tee"][0][::8, ::8])
    (look / "product.yaml").write_text("tryon:\n  method: kontext\n", encoding="utf-8")
    r = process_sku(load_product(look), tmp_path / "c", get_engine("classic"), opts)
    assert r.status == "failed" and "the batch (--commercial)" in r.error and "SDXL" in r.error


def test_one_repo_with_two_models_keeps_both_licences():
    """ByteDance/Hyper-SD holds a FLUX and an SDXL LoRA with different licences: two registry entries."""
    from pipelines.models.profiles import get_profile
    from pipelines.models.licence import licence_of
    from pipelines.models import known

    specs = {s.key: s for s in known.all_models() if s.id == "ByteDance/Hyper-SD"}
    assert set(specs) == {"ByteDance/Hyper-SD:flux-8step", "ByteDance/Hyper-SD:sdxl-8step"}
    assert specs["ByteDance/Hyper-SD:flux-8step"].family == "flux-lora"
    assert specs["ByteDance/Hyper-SD:sdxl-8step"].family == "sdxl-lora"
    flux = licence_of(get_profile("ByteDance/Hyper-SD:flux-8step"))
    sdxl = licence_of(get_profile("ByteDance/Hyper-SD:sdxl-8step"))
    assert flux.licence == "FLUX.1-dev-Non-Commercial" and sdxl.licence.startswith("Hyper-SD")
