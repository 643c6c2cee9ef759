"""The segmentation models Vitrine knows: GroundingDINO (boxes from text) and Segment Anything (masks from boxes).

Each model is named by the Hugging Face repo that publishes it and found by `pipelines.models.location`
in ``--model-root DIR/<org>/<name>/`` or the Hugging Face cache. Two formats are supported per family:

- **transformers** snapshots (``config.json`` + weights + processor files), loaded with
  ``GroundingDinoForObjectDetection`` / ``SamModel`` / ``SamHQModel`` / ``Sam2Model``: the default;
- **original** checkpoints: the ``segment_anything`` package's ``sam_vit_*.pth`` files (as mirrored in
  ``ybelkada/segment-anything``) and ``groundingdino-py``'s config + ``.pth`` (``ShilongLiu/GroundingDINO``),
  which also needs the ``google-bert/bert-base-uncased`` text encoder.

Licences are those published with the weights. Importing this module is cheap (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.models.registry import ModelSpec, register

#: Families (the ``family`` of a `ModelSpec`) and the backend that loads each.
GROUNDING_DINO = "grounding-dino"
GROUNDING_DINO_ORIGINAL = "groundingdino-py"
SAM = "sam"
SAM_HQ = "sam-hq"
SAM2 = "sam2"
SAM_ORIGINAL = "sam-original"
TEXT_ENCODER = "text-encoder"

DETECTOR_FAMILIES = (GROUNDING_DINO, GROUNDING_DINO_ORIGINAL)
MASK_FAMILIES = (SAM, SAM_HQ, SAM2, SAM_ORIGINAL)

#: Files whose presence marks a complete snapshot (the weights' and processor's names vary between
#: repos and are checked when loading).
_HF_DETECTOR_FILES = ("config.json", "tokenizer_config.json")
_HF_SAM_FILES = ("config.json",)

#: The BERT text encoder that ``groundingdino-py`` configs name as ``bert-base-uncased``.
BERT_BASE_UNCASED = "google-bert/bert-base-uncased"
#: Repo holding the original ``segment_anything`` checkpoints (``checkpoints/sam_vit_{b,l,h}_*.pth``).
SAM_ORIGINAL_REPO = "ybelkada/segment-anything"
#: Repo holding the original GroundingDINO checkpoints and their ``*.cfg.py`` configs.
GROUNDING_DINO_ORIGINAL_REPO = "ShilongLiu/GroundingDINO"


@dataclass(frozen=True)
class OriginalCheckpoint:
    """One original-format checkpoint inside a repo.

    Attributes:
        variant (`str`): ``vit_b``/``vit_l``/``vit_h`` (SAM) or ``swint_ogc``/``swinb_cogcoor`` (GroundingDINO).
        weights (`str`): path of the ``.pth`` inside the repo.
        config (`str`, *optional*): path of the ``groundingdino-py`` config inside the repo.
    """

    variant: str
    weights: str
    config: str | None = None


#: Original SAM checkpoints, best first (as published by facebookresearch/segment-anything).
SAM_ORIGINAL_CHECKPOINTS = (
    OriginalCheckpoint("vit_h", "checkpoints/sam_vit_h_4b8939.pth"),
    OriginalCheckpoint("vit_l", "checkpoints/sam_vit_l_0b3195.pth"),
    OriginalCheckpoint("vit_b", "checkpoints/sam_vit_b_01ec64.pth"),
)
#: Original GroundingDINO checkpoints, best first (as published by IDEA-Research/GroundingDINO).
GROUNDING_DINO_ORIGINAL_CHECKPOINTS = (
    OriginalCheckpoint("swinb_cogcoor", "groundingdino_swinb_cogcoor.pth", "GroundingDINO_SwinB.cfg.py"),
    OriginalCheckpoint("swint_ogc", "groundingdino_swint_ogc.pth", "GroundingDINO_SwinT_OGC.cfg.py"),
)

SEGMENTATION_MODELS: tuple[ModelSpec, ...] = (
    # -- boxes from text -------------------------------------------------------------------------------
    ModelSpec("IDEA-Research/grounding-dino-base", GROUNDING_DINO, "Apache-2.0", True, _HF_DETECTOR_FILES,
              description="GroundingDINO Swin-B, text-prompted boxes (transformers)"),
    ModelSpec("IDEA-Research/grounding-dino-tiny", GROUNDING_DINO, "Apache-2.0", True, _HF_DETECTOR_FILES,
              description="GroundingDINO Swin-T, text-prompted boxes (transformers)"),
    ModelSpec(GROUNDING_DINO_ORIGINAL_REPO, GROUNDING_DINO_ORIGINAL, "Apache-2.0", True, (),
              description="GroundingDINO original .pth + .cfg.py (groundingdino-py; needs bert-base-uncased)"),
    ModelSpec(BERT_BASE_UNCASED, TEXT_ENCODER, "Apache-2.0", True, ("config.json", "vocab.txt"),
              description="BERT text encoder of the original GroundingDINO checkpoints"),
    # -- masks from boxes ------------------------------------------------------------------------------
    ModelSpec("facebook/sam-vit-huge", SAM, "Apache-2.0", True, _HF_SAM_FILES,
              description="Segment Anything ViT-H (transformers)"),
    ModelSpec("facebook/sam-vit-large", SAM, "Apache-2.0", True, _HF_SAM_FILES,
              description="Segment Anything ViT-L (transformers)"),
    ModelSpec("facebook/sam-vit-base", SAM, "Apache-2.0", True, _HF_SAM_FILES,
              description="Segment Anything ViT-B (transformers)"),
    ModelSpec("syscv-community/sam-hq-vit-huge", SAM_HQ, "Apache-2.0", True, _HF_SAM_FILES,
              description="SAM-HQ ViT-H, finer edges (transformers)"),
    ModelSpec("syscv-community/sam-hq-vit-large", SAM_HQ, "Apache-2.0", True, _HF_SAM_FILES,
              description="SAM-HQ ViT-L, finer edges (transformers)"),
    ModelSpec("syscv-community/sam-hq-vit-base", SAM_HQ, "Apache-2.0", True, _HF_SAM_FILES,
              description="SAM-HQ ViT-B, finer edges (transformers)"),
    ModelSpec("facebook/sam2.1-hiera-large", SAM2, "Apache-2.0", True, _HF_SAM_FILES,
              description="SAM 2.1 Hiera-L, image masks (transformers)"),
    ModelSpec("facebook/sam2.1-hiera-base-plus", SAM2, "Apache-2.0", True, _HF_SAM_FILES,
              description="SAM 2.1 Hiera-B+, image masks (transformers)"),
    ModelSpec("facebook/sam2.1-hiera-small", SAM2, "Apache-2.0", True, _HF_SAM_FILES,
              description="SAM 2.1 Hiera-S, image masks (transformers)"),
    ModelSpec("facebook/sam2.1-hiera-tiny", SAM2, "Apache-2.0", True, _HF_SAM_FILES,
              description="SAM 2.1 Hiera-T, image masks (transformers)"),
    ModelSpec(SAM_ORIGINAL_REPO, SAM_ORIGINAL, "Apache-2.0", True, (),
              description="Segment Anything original sam_vit_{h,l,b}_*.pth (segment_anything package)"),
)

#: What ``auto`` looks for, best first. The original-format repos come last: transformers is the default.
DETECTOR_PREFERENCE = (
    "IDEA-Research/grounding-dino-base",
    "IDEA-Research/grounding-dino-tiny",
    GROUNDING_DINO_ORIGINAL_REPO,
)
MASK_PREFERENCE = (
    "facebook/sam-vit-huge",
    "facebook/sam-vit-large",
    "facebook/sam-vit-base",
    "syscv-community/sam-hq-vit-huge",
    "syscv-community/sam-hq-vit-large",
    "syscv-community/sam-hq-vit-base",
    "facebook/sam2.1-hiera-large",
    "facebook/sam2.1-hiera-base-plus",
    "facebook/sam2.1-hiera-small",
    "facebook/sam2.1-hiera-tiny",
    SAM_ORIGINAL_REPO,
)

for _spec in SEGMENTATION_MODELS:
    register(_spec)
