"""ControlNet wiring against the shapes real checkpoints have: a single non-union FLUX ControlNet
(``InstantX/FLUX.1-dev-Controlnet-Canny``), two non-union FLUX ControlNets, and the union one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers.generation import SMALL, fast_settings, link_model_root, make_product, tiny_model_root
from pipelines.catalog.options import RenderOptions
from pipelines.catalog.render import process_sku
from pipelines.catalog.manifest import read_manifest

pytestmark = pytest.mark.filterwarnings("ignore:.*FluxPosEmbed:FutureWarning")

FLUX_UNION = "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro"
FLUX_CANNY_CN = "InstantX/FLUX.1-dev-Controlnet-Canny"
TEE = "garment_type: upper\nbackgrounds: [studio]\nseeds: [3]\n"


def write_non_union_flux_controlnet(folder: Path, seed: int = 11) -> None:
    """A tiny FluxControlNetModel without modes (``num_mode`` unset, as InstantX's Canny config.json)."""
    import torch
    from diffusers import FluxControlNetModel

    torch.manual_seed(seed)
    cn = FluxControlNetModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                             num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                             axes_dims_rope=[4, 4, 8], guidance_embeds=True)
    cn.save_pretrained(folder, safe_serialization=True)


@pytest.fixture(scope="module")
def canny_only_root(tmp_path_factory):
    dest = link_model_root(tiny_model_root(), tmp_path_factory.mktemp("models"), without=(FLUX_UNION,))
    write_non_union_flux_controlnet(dest / FLUX_CANNY_CN)
    return dest


@pytest.fixture(scope="module")
def product(tmp_path_factory, drawn_products):
    d = tmp_path_factory.mktemp("products")
    make_product(d, "tee", drawn_products["tee"][0], TEE)
    return d


def test_flux_with_only_a_non_union_controlnet_renders(canny_only_root, product, tmp_path):
    from pipelines.engines.generative import flux_engine
    from pipelines.product import load_product

    engine = flux_engine(model_root=canny_only_root, settings=fast_settings())
    assert [p.id for p in engine.generator.model_set.controlnets] == [FLUX_CANNY_CN]
    r = process_sku(load_product(product / "tee", root=product), tmp_path, engine, RenderOptions(**SMALL))
    assert r.status == "ok", r.error
    cn = engine.generator.scene_pipeline().generator.controlnet
    assert type(cn).__name__ == "FluxControlNetModel"  # not wrapped: diffusers' wrapper needs modes
    g = next(o for o in read_manifest(Path(r.manifest))["outputs"] if o["kind"] == "lifestyle")["generation"]
    assert g["controlnets"] == [FLUX_CANNY_CN]


def test_controlnet_component_wraps_union_and_several_but_not_one_plain():
    import diffusers

    from pipelines.generation.loading import controlnet_component

    plain = diffusers.FluxControlNetModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=0,
                                          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                          pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    union = diffusers.FluxControlNetModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=0,
                                          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                          pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], num_mode=10)
    assert controlnet_component("flux", [plain]) is plain
    assert isinstance(controlnet_component("flux", [union]), diffusers.FluxMultiControlNetModel)
    assert isinstance(controlnet_component("flux", [plain, plain]), diffusers.FluxMultiControlNetModel)


def test_two_non_union_flux_controlnets_get_one_mode_each_and_run(canny_only_root):
    """diffusers' FluxMultiControlNetModel zips images with modes: without a mode per image it runs no
    ControlNet at all (UnboundLocalError); with ``control_mode=[None, None]`` both run."""
    from PIL import Image

    from pipelines.generation.loading import LoadContext, load_pipeline
    from pipelines.models.profiles import get_profile
    from pipelines.generation.scene import GarmentScenePipeline, SceneParams

    cn = get_profile(FLUX_CANNY_CN)
    ctx = LoadContext(canny_only_root, fast_settings())
    pipe = load_pipeline("black-forest-labs/FLUX.1-dev", pipeline_class="FluxControlNetInpaintPipeline",
                         controlnets=[cn, cn], ctx=ctx)
    scene = GarmentScenePipeline(pipe, family="flux", control_order=("openpose", "canny"))
    rng = np.random.default_rng(0)
    controls = {"canny": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)}
    kw = scene.control_kwargs(controls, SceneParams(steps=1, guidance=1.0, strength=1.0))
    assert kw["control_mode"] == [None, None] and kw["controlnet_conditioning_scale"][0] == 0.0
    img = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    out = pipe(prompt="a photo", image=img, mask_image=Image.new("L", (32, 32), 255), width=32, height=32,
               num_inference_steps=1, output_type="np", **kw).images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()
