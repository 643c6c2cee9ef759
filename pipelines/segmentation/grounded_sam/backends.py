"""transformers backends: ``GroundingDinoForObjectDetection`` for boxes, ``SamModel`` / ``SamHQModel`` /
``Sam2Model`` for masks. Both follow the small interfaces `pipelines.segmentation.grounded_sam.pipeline` uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.errors import InputError
from pipelines.segmentation.grounded_sam.detection import DetectorOutput, caption_for, match_spans, phrase_spans, structural_ids

#: config.json ``model_type`` -> (model class, processor class) of the transformers mask models.
MASK_MODEL_CLASSES = {
    "sam": ("SamModel", "SamProcessor"),
    "sam_hq": ("SamHQModel", "SamHQProcessor"),
    "sam2": ("Sam2Model", "Sam2Processor"),
}


class TransformersGroundingDino:
    """Boxes from text with transformers' GroundingDINO.

    Args:
        model (`GroundingDinoForObjectDetection`): the detector, in eval mode.
        processor (`GroundingDinoProcessor`): its image processor and BERT tokenizer.
        device (`str`, *optional*, defaults to ``"cpu"``).
    """

    def __init__(self, model, processor, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device: str = "cpu", dtype=None) -> TransformersGroundingDino:
        from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

        model = GroundingDinoForObjectDetection.from_pretrained(str(folder), dtype=dtype)
        return cls(model, GroundingDinoProcessor.from_pretrained(str(folder)), device)

    def detect(self, image: np.ndarray, phrases: list[str]) -> DetectorOutput:
        """Run the detector on ``image`` (HxWx3 uint8 RGB) with the caption made of ``phrases``."""
        import torch

        caption = caption_for(phrases)
        inputs = self.processor(images=Image.fromarray(image), text=caption, return_tensors="pt").to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            out = self.model(**inputs)
        probs = torch.sigmoid(out.logits[0].float()).cpu().numpy()  # padded positions: sigmoid(-inf) = 0
        boxes = out.pred_boxes[0].float().cpu().numpy()
        ids = inputs["input_ids"][0].tolist()
        spans = phrase_spans(ids, structural_ids(self.processor.tokenizer))
        tokens = self.processor.tokenizer.convert_ids_to_tokens(ids)
        decoded = [self.processor.tokenizer.decode([ids[p] for p in s]) for s in spans]
        return DetectorOutput(np.nan_to_num(probs, nan=0.0), boxes, spans, match_spans(spans, phrases, decoded),
                              (int(image.shape[1]), int(image.shape[0])), tokens)


class TransformersSamPredictor:
    """Masks from XYXY pixel boxes with transformers' SAM, SAM-HQ or SAM 2 (image embedding computed once).

    Args:
        model: ``SamModel``, ``SamHQModel`` or ``Sam2Model``, in eval mode.
        processor: the matching processor.
        device (`str`, *optional*, defaults to ``"cpu"``).
    """

    def __init__(self, model, processor, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.kind = getattr(model.config, "model_type", "sam")
        self._image: Image.Image | None = None
        self._embeddings: dict = {}
        self._sizes: dict = {}

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device: str = "cpu", dtype=None) -> TransformersSamPredictor:
        import json

        import transformers

        model_type = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("model_type")
        if model_type not in MASK_MODEL_CLASSES:
            raise InputError(f"unsupported mask model type {model_type!r}; expected one of "
                             f"{', '.join(MASK_MODEL_CLASSES)}", Path(folder) / "config.json", "model_type")
        model_cls, proc_cls = (getattr(transformers, n) for n in MASK_MODEL_CLASSES[model_type])
        model = model_cls.from_pretrained(str(folder), dtype=dtype)
        return cls(model, proc_cls.from_pretrained(str(folder)), device)

    def set_image(self, image: np.ndarray) -> None:
        """``image``: HxWx3 uint8 RGB. Runs the image encoder once; later boxes reuse its embedding."""
        import torch

        self._image = Image.fromarray(image)
        inputs = self.processor(images=self._image, return_tensors="pt")
        self._sizes = {k: inputs[k] for k in ("original_sizes", "reshaped_input_sizes") if k in inputs}
        pixels = inputs["pixel_values"].to(self.device, self.model.dtype)
        with torch.inference_mode():
            emb = self.model.get_image_embeddings(pixels)
        if self.kind == "sam_hq":
            self._embeddings = {"image_embeddings": emb[0], "intermediate_embeddings": emb[1]}
        else:
            self._embeddings = {"image_embeddings": emb}

    def predict_low_res(self, boxes_xyxy: np.ndarray):
        """Low-resolution mask logits ``(N, h, w)`` (torch) and predicted IoUs ``(N,)`` for XYXY pixel boxes."""
        import torch

        if self._image is None:
            raise RuntimeError("call set_image() first")
        input_boxes = self.box_prompt(boxes_xyxy)
        with torch.inference_mode():
            out = self.model(input_boxes=input_boxes.to(self.device, self.model.dtype),
                             multimask_output=False, **self._embeddings)
        low = out.pred_masks[0, :, 0].float()
        return low, out.iou_scores[0, :, 0].float().cpu().numpy()

    def box_prompt(self, boxes_xyxy: np.ndarray):
        """``(1, N, 4)`` float64 tensor: XYXY pixel boxes of the set image in the model's input frame.

        What the processor's ``input_boxes`` gives, computed from the sizes `set_image` recorded instead of
        pre-processing the whole image again for every call: SAM/SAM-HQ scale x by
        ``reshaped_w / original_w`` and y by ``reshaped_h / original_h`` (long side 1024); SAM 2 by
        ``target / original`` on both axes (its processor takes ``original_sizes`` without an image).
        """
        import torch

        boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
        if self.kind == "sam2":
            return self.processor(input_boxes=[boxes.tolist()], original_sizes=self._sizes["original_sizes"],
                                  return_tensors="pt")["input_boxes"]
        old_h, old_w = (float(v) for v in self._sizes["original_sizes"][0])
        new_h, new_w = (float(v) for v in self._sizes["reshaped_input_sizes"][0])
        scaled = boxes * np.array([new_w / old_w, new_h / old_h, new_w / old_w, new_h / old_h])
        return torch.from_numpy(scaled)[None]

    def upscale(self, low_res_logits) -> np.ndarray:
        """``(K, h, w)`` low-resolution logits to ``(K, H, W)`` float32 probabilities at the image's size."""
        import torch

        masks = [low_res_logits[:, None].cpu()]
        with torch.inference_mode():
            if self.kind == "sam2":
                up = self.processor.post_process_masks(masks, self._sizes["original_sizes"], binarize=False)[0]
            else:
                up = self.processor.image_processor.post_process_masks(
                    masks, self._sizes["original_sizes"], self._sizes["reshaped_input_sizes"], binarize=False)[0]
        return torch.sigmoid(up[:, 0].float()).numpy()
