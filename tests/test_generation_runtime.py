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
        state = determinism.configure_determinism("cuda", force=True)
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
    from pipelines.generation.loading import _quantization_config

    with pytest.raises(MissingBackendError, match=r"pip install 'bitsandbytes>=0.43.2'.*VITRINE_GEN_QUANTIZE"):
        _quantization_config(GenerationSettings(quantize="nf4"))


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
    qc = loading._quantization_config(GenerationSettings(quantize="nf4"), torch.float16)
    assert type(qc).__name__ == "BitsAndBytesConfig"
    assert qc.load_in_4bit and not qc.load_in_8bit and qc.bnb_4bit_quant_type == "nf4"
    assert qc.bnb_4bit_use_double_quant and qc.bnb_4bit_compute_dtype == torch.float16
