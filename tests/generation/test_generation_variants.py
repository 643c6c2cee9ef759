"""SDXL fp16 weight variants as the real repos ship them (``*.fp16.safetensors`` beside the fp32 files):
an fp16-only download loads and renders, a full snapshot reads the fp16 files unless computing in float32."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.generation import SMALL, fast_settings, link_model_root, make_product, tiny_model_root
from pipelines.catalog.options import RenderOptions
from pipelines.catalog.render import process_sku
from pipelines.catalog.verify import verify_entry

# the model cache is keyed by repo id, not folder: these tests load one repo id from several roots
pytestmark = pytest.mark.usefixtures("fresh_model_cache")

SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
TEE = "garment_type: upper\nbackgrounds: [studio]\nseeds: [4]\n"
PARTS = ("unet", "text_encoder", "text_encoder_2", "vae")


def fp16_copy(src: Path, dest: Path, *, keep_plain: bool, offset: float = 0.0) -> Path:
    """Copy a diffusers repo, adding ``<name>.fp16.safetensors`` beside each component's weights (their
    values cast to float16, plus ``offset`` so a test can tell which file was read); without
    ``keep_plain`` the fp32 files are removed (``hf download --include "*.fp16.safetensors"``)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dest, symlinks=False)
    for part in PARTS:
        for f in sorted((dest / part).glob("*.safetensors")):
            state = {k: (v.float() + offset).half().contiguous() for k, v in load_file(f).items()}
            save_file(state, f.with_name(f.name.replace(".safetensors", ".fp16.safetensors")), metadata={"format": "pt"})
            if not keep_plain:
                f.unlink()
    return dest




@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    tiny = tiny_model_root()
    only = link_model_root(tiny, tmp_path_factory.mktemp("fp16-only"), without=(SDXL_BASE,))
    fp16_copy(tiny / SDXL_BASE, only / SDXL_BASE, keep_plain=False)
    full = link_model_root(tiny, tmp_path_factory.mktemp("full"), without=(SDXL_BASE,))
    fp16_copy(tiny / SDXL_BASE, full / SDXL_BASE, keep_plain=True, offset=0.25)
    return {"tiny": tiny, "only": only, "full": full}


def test_weights_variant_rule(tmp_path):
    from pipelines.generation.loading import weights_variant

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "diffusion_pytorch_model.fp16.safetensors").touch()
    assert weights_variant(tmp_path / "a", "float32") == "fp16"  # the only weights
    (tmp_path / "a" / "diffusion_pytorch_model.safetensors").touch()
    assert weights_variant(tmp_path / "a", "float32") is None  # exact fp32 weights on a CPU
    assert weights_variant(tmp_path / "a", "float16") == "fp16"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "model.fp16-00001-of-00002.safetensors").touch()  # sharded transformers variant
    assert weights_variant(tmp_path / "b", "bfloat16") == "fp16"
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "model.safetensors").touch()
    assert weights_variant(tmp_path / "c", "float16") is None
    assert weights_variant(tmp_path / "missing", "float16") is None


def test_fp16_only_download_renders(roots, drawn_products, tmp_path):
    from pipelines.engines.generative import sdxl_engine
    from pipelines.product import load_product

    make_product(tmp_path / "p", "tee", drawn_products["tee"][0], TEE)
    engine = sdxl_engine(model_root=roots["only"], settings=fast_settings())
    r = process_sku(load_product(tmp_path / "p" / "tee", root=tmp_path / "p"), tmp_path / "cat", engine,
                    RenderOptions(**SMALL))
    assert r.status == "ok", r.error
    assert all(c["identical_fraction"] == 1.0 for c in verify_entry(tmp_path / "cat" / "tee"))


@pytest.mark.parametrize("dtype, reads_fp16", [("float16", True), ("float32", False)])
def test_full_snapshot_reads_fp16_unless_float32(roots, dtype, reads_fp16):
    import torch
    from safetensors.torch import load_file

    from pipelines.generation.loading import LoadContext, load_component, load_denoiser
    from pipelines.models.profiles import get_profile

    base = get_profile(SDXL_BASE)
    ctx = LoadContext(roots["full"], fast_settings(dtype=dtype))
    unet = load_denoiser(base, ctx)
    te = load_component(base, "text_encoder", ctx)
    for model, part, fname in ((unet, "unet", "diffusion_pytorch_model"), (te, "text_encoder", "model")):
        plain = load_file(roots["tiny"] / SDXL_BASE / part / f"{fname}.safetensors")
        name, got = next((k, v) for k, v in model.state_dict().items() if k in plain and v.ndim == 2)
        want = (plain[name].float() + 0.25).half() if reads_fp16 else plain[name]
        assert got.dtype == getattr(torch, dtype)
        torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=0)
