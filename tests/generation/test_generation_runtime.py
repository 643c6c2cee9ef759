"""Generation runtime settings: deterministic CUDA kernels (recorded), the nf4 (bitsandbytes) path."""

from __future__ import annotations

import importlib.util
import os

import pytest

from pipelines.errors import MissingBackendError
from pipelines.generation.settings import GenerationSettings


def test_determinism_is_left_alone_off_cuda_and_set_on_cuda(monkeypatch):
    import torch

    from pipelines.generation import determinism

    assert determinism.configure_determinism("cpu") == {"applied": False,
                                                       "reason": "cpu: deterministic without extra settings"}
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        from pipelines.settings import cublas_workspace_config  # the entry point sets it before CUDA starts

        workspace = cublas_workspace_config(determinism.CUBLAS_WORKSPACE)
        state = determinism.configure_determinism("cuda", force=True, cublas_workspace=workspace)
        assert state["applied"] and state["deterministic_algorithms"] and state["warn_only"]
        assert state["cudnn_deterministic"] and not state["cudnn_benchmark"]
        assert state["cublas_workspace_config"] == os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]
        determinism._state = None


def test_nf4_is_a_quantize_setting():
    assert GenerationSettings(quantize="nf4").quantize == "nf4"
    assert GenerationSettings.from_env({"VITRINE_GEN_QUANTIZE": "nf4"}).quantize == "nf4"


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed")
def test_nf4_without_bitsandbytes_says_what_to_install():
    from pipelines.generation.loading import quantization_config

    with pytest.raises(MissingBackendError, match=r"pip install 'bitsandbytes>=0.43.2'.*VITRINE_GEN_QUANTIZE"):
        quantization_config(GenerationSettings(quantize="nf4"))


def test_nf4_config_is_4bit_normalfloat_with_the_compute_dtype(monkeypatch):
    import torch

    from pipelines.generation import loading

    import importlib.metadata

    from diffusers import BitsAndBytesConfig  # noqa: F401  (imported before bitsandbytes is faked below)

    # pretend bitsandbytes is installed (diffusers' config checks its version; the weights are not loaded here)
    real, real_version = importlib.util.find_spec, importlib.metadata.version
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes" else real(name, *a))
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "0.45.0" if name == "bitsandbytes" else real_version(name))
    qc = loading.quantization_config(GenerationSettings(quantize="nf4"), torch.float16)
    assert type(qc).__name__ == "BitsAndBytesConfig"
    assert qc.load_in_4bit and not qc.load_in_8bit and qc.bnb_4bit_quant_type == "nf4"
    assert qc.bnb_4bit_use_double_quant and qc.bnb_4bit_compute_dtype == torch.float16


def test_generated_scene_is_upscaled_at_most_1_2x_and_records_its_sizes():
    import dataclasses

    import numpy as np

    from tests.helpers.generation import fast_settings, tiny_model_root
    from pipelines.compositing.composite import seam_band
    from pipelines.engines.generative import sdxl_engine
    from pipelines.generation.worksize import MAX_UPSCALE

    engine = sdxl_engine(model_root=tiny_model_root(), settings=fast_settings(work_side=None))
    scene = engine.generator.scene_pipeline()
    h, w = 240, 192  # the tiny models' native area is 32², so the old 1-megapixel rule upscaled 6x
    fg = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    alpha[80:160, 60:130] = 255
    fg[alpha > 0] = (30, 60, 200)
    band = seam_band(alpha, 3, 4)
    out = scene(fg, alpha, band, prompt="a bag", params=dataclasses.replace(engine.generator.scene_params(), steps=1,
                                                                           seam_steps=2), seed=3)
    r = out.record
    assert r["upscale"] <= MAX_UPSCALE and r["seam_upscale"] <= MAX_UPSCALE
    assert tuple(reversed(out.generated.shape[:2])) == tuple(r["work_size"])
    x0, y0, x1, y1 = r["seam_crop"]
    ys, xs = np.nonzero(band)
    assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
    assert (x1 - x0) * (y1 - y0) < w * h  # the seam works on the band's surroundings, not the whole frame
    changed = np.any(out.final != out.composite, axis=2)
    assert not changed[band == 0].any()  # outside the band: the composite's pixels, bit for bit


def test_settings_that_cannot_run_here_fail_at_engine_start():
    from tests.helpers.generation import fast_settings, tiny_model_root
    from pipelines.errors import InputError
    from pipelines.engines.generative import flux_engine

    with pytest.raises(InputError) as exc:  # offload without CUDA: before any model is loaded
        flux_engine(model_root=tiny_model_root(), settings=fast_settings(offload="model"))
    assert exc.value.key == "VITRINE_GEN_OFFLOAD"
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(MissingBackendError, match="bitsandbytes"):
            flux_engine(model_root=tiny_model_root(), settings=fast_settings(quantize="nf4"))
