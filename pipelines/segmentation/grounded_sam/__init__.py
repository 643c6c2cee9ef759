"""Text-prompted segmentation: GroundingDINO boxes + Segment Anything masks ("grounded-sam").

- `GroundedSam` (pipeline.py): the pipeline, models passed in or found with `GroundedSam.from_models`;
- `pipelines.segmentation.grounded_sam.detection`: what ``box_threshold`` and ``text_threshold`` mean (their defaults: `pipelines.segmentation.phrases`), retries, policies;
- `pipelines.segmentation.grounded_sam.loading`: finding the models (``--model-root``, HF cache) and loading them once;
- `pipelines.segmentation.grounded_sam.backends` (transformers) and `pipelines.segmentation.grounded_sam.original` (segment_anything
  ``.pth``, groundingdino-py with its transformers-5 compatibility layer);
- `pipelines.segmentation.grounded_sam.segmenter`: the ``grounded-sam`` backend of ``vitrine segment`` and the
  subject segmentation of the batch engines (`GroundedSamSegmenter`: the ``grounded-sam`` engine, and
  ``flux``/``sdxl`` when its models are found).

Importing this package does not import torch; models load on first use.
"""

from pipelines.segmentation.grounded_sam.detection import POLICIES, Detection, DetectorOutput
from pipelines.segmentation.phrases import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD
from pipelines.segmentation.grounded_sam.pipeline import GroundedSam, GroundedSamOutput

__all__ = [
    "DEFAULT_BOX_THRESHOLD",
    "DEFAULT_TEXT_THRESHOLD",
    "POLICIES",
    "Detection",
    "DetectorOutput",
    "GroundedSam",
    "GroundedSamOutput",
]
