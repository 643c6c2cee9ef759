"""The original-format checkpoints end to end (slow): groundingdino-py's config + .pth on transformers 5 and
a real-size segment_anything ViT-B .pth, both through Vitrine's loader. Random weights: no real checkpoint
is available here, so these check loading and shapes, not detection quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.models import segmentation_models as sm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def original_root(tmp_path_factory) -> Path:
    from pipelines.dev_models.tiny import build_tiny_models

    root = tmp_path_factory.mktemp("original-models")
    written = build_tiny_models(root, ["groundingdino-py", "sam-original"])
    assert written["groundingdino-py"] == [sm.GROUNDING_DINO_ORIGINAL_REPO, sm.BERT_BASE_UNCASED]
    return root


def test_groundingdino_py_checkpoint_loads_completely_and_detects(original_root):
    from pipelines.segmentation.grounded_sam import GroundedSam, loading
    from pipelines.segmentation.grounded_sam.original import load_torch_checkpoint

    det, _ = loading.resolve_models(original_root, detector=sm.GROUNDING_DINO_ORIGINAL_REPO,
                                    sam=sm.SAM_ORIGINAL_REPO)
    assert (det.backend, det.file, det.config) == ("groundingdino-py", "groundingdino_swint_ogc.pth",
                                                    "GroundingDINO_SwinT_OGC.cfg.py")
    assert det.text_encoder == str(original_root / sm.BERT_BASE_UNCASED)
    pipe = GroundedSam.from_models(original_root, detector=det.id, sam=sm.SAM_ORIGINAL_REPO, device="cpu",
                                   original_shorter_side=160)
    saved = load_torch_checkpoint(original_root / sm.GROUNDING_DINO_ORIGINAL_REPO / det.file)["model"]
    loaded = pipe.detector.model.state_dict()
    params = dict(pipe.detector.model.named_parameters())
    assert set(params) <= set(saved)
    for name in params:
        assert torch.equal(loaded[name], saved[name].float()), name
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    out = pipe(image, "shirt. hand", box_threshold=0.0, text_threshold=0.0)
    assert out.mask.shape == (120, 160) and set(np.unique(out.mask)) <= {0, 255}
    assert out.detections and {d.label for d in out.detections} <= {"shirt", "hand"}
    assert [m["backend"] for m in out.models] == ["groundingdino-py", "segment_anything"]


def test_real_size_sam_vit_b_pth_loads_through_our_loader(tmp_path):
    from segment_anything import sam_model_registry

    from pipelines.segmentation.grounded_sam.original import OriginalSamPredictor, load_original_sam

    torch.manual_seed(0)
    pth = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(sam_model_registry["vit_b"]().state_dict(), pth)  # the released file's shape, random weights
    model, arch = load_original_sam(pth)
    assert arch["variant"] == "vit_b"
    pred = OriginalSamPredictor(model)
    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    pred.set_image(image)
    low, iou = pred.predict_low_res(np.array([[10, 20, 200, 250], [100, 50, 390, 290]], np.float32))
    assert tuple(low.shape) == (2, 256, 256) and iou.shape == (2,)
    assert pred.upscale(low[:1]).shape == (1, 300, 400)
