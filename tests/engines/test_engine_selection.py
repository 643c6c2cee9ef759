"""Which engine `auto` picks, and which segmentation a generative engine uses, by the models found."""

import numpy as np
import pytest

from pipelines.engines.registry import get_engine
from pipelines.errors import InputError
from pipelines.imageio import load_image, save_image
from pipelines.product import load_product


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from pipelines.dev_models.tiny import build_tiny_models

    root = tmp_path_factory.mktemp("tiny-sel")
    build_tiny_models(root, ["flux", "grounding-dino", "sam"])
    return root


def test_auto_without_weights_is_classic_and_says_why(tmp_path):
    e = get_engine("auto", model_root=tmp_path)
    d = e.describe()
    assert d["name"] == "classic" and d["requested"] == "auto"
    assert str(tmp_path) in d["reason"] and "classic" in d["reason"]


def test_explicit_engine_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="flux"):
        get_engine("flux", model_root=tmp_path)


def test_auto_prefers_generation_and_uses_grounded_sam_for_subjects(tiny_root, tmp_path, drawn_products):
    e = get_engine("auto", model_root=tiny_root)
    d = e.describe()
    assert d["name"] == "flux" and d["requested"] == "auto" and "flux" in d["reason"]
    assert d["backends"]["product_segmentation"].startswith("grounded-sam")
    ids = {m["id"] for m in e.models()}
    assert any(i.startswith("IDEA-Research/grounding-dino") for i in ids)
    assert any(i.startswith("facebook/sam") for i in ids)
    assert any(i.startswith("black-forest-labs/FLUX.1") for i in ids)
    sku = tmp_path / "tee"
    sku.mkdir()
    save_image(sku / "front.png", drawn_products["tee"][0])
    product = load_product(sku, root=tmp_path)
    subject = e.find_subject(load_image(sku / "front.png"), product)
    assert "grounded_sam" in subject.metrics  # the segmentation ran through grounded-sam (random weights)
    assert subject.alpha.shape == drawn_products["tee"][1].shape and subject.alpha.dtype == np.uint8
