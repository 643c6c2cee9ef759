"""An engine is a bundle of stage backends: a test builds one from any backends and renders through it."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.catalog.manifest import read_manifest, validate_manifest
from pipelines.catalog.options import RenderOptions
from pipelines.catalog.render import process_sku
from pipelines.catalog.verify import verify_entry
from pipelines.compositing.composite import alpha_composite
from pipelines.controls.backend import ClassicControls
from pipelines.engines.bundle import Composed, Engine
from pipelines.engines.classic import ClassicSeams, classic_engine
from pipelines.engines.registry import ENGINES, get_engine
from pipelines.imageio import save_image
from pipelines.product import load_product
from pipelines.segmentation.classic import ClassicSegmenter

TEAL = (0, 128, 128)
OPTIONS = RenderOptions(canvas=256, lifestyle_size=(192, 240))


class FlatGenerator:
    """A generator that paints every background one flat colour and records what it was asked."""

    kind = "flat"
    uses_gpu = False
    settings = None

    def __init__(self):
        self.calls = []

    def background(self, kind, size, seed, alpha, *, contact_shadow):
        return np.full((size[1], size[0], 3), TEAL, np.uint8)

    def place(self, request, default):
        return default

    def compose(self, request, placement, foreground, alpha, band, compositor):
        self.calls.append((request.kind, request.file, request.background))
        background = self.background(request.background, request.size, request.seed, alpha,
                                     contact_shadow=request.contact_shadow)
        composite = alpha_composite(background, foreground, alpha)
        final = compositor.inpaint_seam(composite, foreground, alpha, background, band)
        return Composed(composite=composite, final=final)

    def backends(self):
        return {"background": "flat teal"}

    def details(self):
        return {"flat_colour": list(TEAL)}

    def models(self):
        return []


class GpuSegmenter(ClassicSegmenter):
    kind = "pretend-gpu"
    uses_gpu = True


def _tee(root: Path, rgb: np.ndarray) -> Path:
    d = root / "products" / "tee"
    d.mkdir(parents=True)
    save_image(d / "front.png", rgb)
    (d / "product.yaml").write_text("garment_type: upper\nbackgrounds: [white, studio]\nseeds: [3]\n")
    return d


def test_a_bundle_of_a_classic_segmenter_and_a_fake_generator_renders_a_verified_entry(tmp_path, drawn_products):
    generator = FlatGenerator()
    engine = Engine(name="flat", segmenter=ClassicSegmenter(), controller=ClassicControls(), generator=generator,
                    compositor=ClassicSeams(), requested="flat", reason="a test bundle")
    d = _tee(tmp_path, drawn_products["tee"][0])
    r = process_sku(load_product(d, root=d.parent), tmp_path / "catalog", engine, OPTIONS)
    assert r.status == "ok", r.error
    assert [c[0] for c in generator.calls] == ["main", "lifestyle"]  # every output went through the generator
    entry = tmp_path / "catalog" / "tee"
    m = read_manifest(entry / "manifest.json")
    validate_manifest(m)
    assert m["engine"]["name"] == "flat" and m["engine"]["reason"] == "a test bundle"
    assert m["engine"]["backends"]["background"] == "flat teal"
    assert m["engine"]["backends"]["product_segmentation"].startswith("classic-cutout")
    assert m["engine"]["backends"]["seam_inpainting"].startswith("classic")
    assert m["engine"]["flat_colour"] == list(TEAL)  # the generator's details
    assert [x["id"] for x in m["models"]] == ["mediapipe/pose_landmark_full", "mediapipe/selfie_segmentation"]
    life = next(o for o in m["outputs"] if o["kind"] == "lifestyle")
    pixels = np.asarray(Image.open(entry / life["file"]).convert("RGB"))
    assert tuple(pixels[0, 0]) == TEAL and tuple(pixels[-1, -1]) == TEAL  # far from the subject: the generator's
    assert all(c["identical_fraction"] == 1.0 for c in verify_entry(entry))  # the garment guarantee holds


def test_the_classic_bundle_names_its_backends_and_uses_no_gpu():
    engine = classic_engine()
    assert engine.describe() == get_engine("classic").describe()  # the registry builds the same bundle
    assert (engine.segmenter.kind, engine.controller.kind, engine.generator.kind, engine.compositor.kind) == (
        "classic", "classic", "classic", "classic")
    assert not engine.uses_gpu and engine.generator.settings is None


def test_uses_gpu_is_asked_of_every_stage():
    assert classic_engine(segmenter=GpuSegmenter()).uses_gpu
    assert classic_engine(segmenter=GpuSegmenter()).describe()["name"] == "classic"


def test_the_registry_priorities():
    assert {n: e.priority for n, e in ENGINES.items()} == {"flux": 30, "sdxl": 20, "grounded-sam": 10,
                                                           "classic": -100}


def test_a_bundle_is_frozen():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        classic_engine().name = "other"
