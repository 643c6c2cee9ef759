"""The original-format checkpoints: ``segment_anything``'s ``sam_vit_*.pth`` and groundingdino-py's ``.pth``.

segment_anything
    Its released checkpoints are plain state dicts. They are read with ``torch.load(weights_only=True)``
    (the package's own builders call ``torch.load`` without it) and the architecture is inferred from the
    tensors' shapes; a checkpoint of one of the three released shapes is built with the package's own
    ``sam_model_registry[vit_b|vit_l|vit_h]`` builder, any other (e.g. the tiny test checkpoint) with the
    same modules at the inferred sizes.

groundingdino-py
    Its text encoder wrapper (``BertModelWarper``) calls ``BertModel.get_extended_attention_mask`` and
    ``get_head_mask``, which transformers 5 removed, and passes ``head_mask`` to the BERT encoder, which
    transformers 5 no longer takes. `CompatBertModelWarper` is a drop-in replacement with the same
    sub-modules (so checkpoints load unchanged) that builds the additive attention mask itself. It is
    swapped in only while a model is built, and only when transformers lacks the old method.
    Configs are read as ``key = literal`` assignments (`read_original_config`), never executed.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import InputError, MissingBackendError
from pipelines.segmentation.grounded_sam.detection import DetectorOutput, caption_for, match_spans, phrase_spans, structural_ids
from pipelines.segmentation.grounded_sam.quiet import quiet_loading

logger = logging.getLogger(__name__)

#: Image size used by the original GroundingDINO demo: shorter side 800, longer side at most 1333.
ORIGINAL_SHORTER_SIDE = 800
ORIGINAL_MAX_SIDE = 1333
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The three released SAM encoders, as built by ``segment_anything.build_sam``.
SAM_VARIANTS = {
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": (2, 5, 8, 11)},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn_indexes": (5, 11, 17, 23)},
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn_indexes": (7, 15, 23, 31)},
}
#: Heads of SAM's two-way mask-decoder transformer: 8 in every released checkpoint (not inferable from shapes).
SAM_DECODER_HEADS = 8
#: Missing-key share above which a groundingdino checkpoint is taken not to match its config.
MAX_MISSING_FRACTION = 0.02


def _require(module: str, extra: str):
    import importlib

    try:
        with warnings.catch_warnings():  # groundingdino imports timm's deprecated paths
            warnings.simplefilter("ignore", FutureWarning)
            return importlib.import_module(module)
    except ImportError as exc:
        raise MissingBackendError(module, f"pip install {extra} ({exc})") from None


def load_torch_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with errors that name the file.

    ``argparse.Namespace`` (stored by some GroundingDINO training runs next to the weights) is allowed.
    """
    import argparse

    import torch

    path = Path(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError("checkpoint not found", path) from None
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError (zip), EOFError ...
        raise InputError(
            f"cannot read the checkpoint with torch.load(weights_only=True): {exc}. Vitrine never unpickles "
            "arbitrary objects; re-save the file as a plain state dict.", path) from None
    if not isinstance(obj, dict):
        raise InputError(f"expected a state dict, got {type(obj).__name__}", path)
    return obj


# --------------------------------------------------------------------------------------------------
# segment_anything
# --------------------------------------------------------------------------------------------------


def infer_sam_architecture(state_dict: dict[str, Any]) -> dict[str, Any]:
    """The ``segment_anything`` architecture a state dict was saved from, from its tensors' shapes.

    Returns:
        `dict`: ``img_size``, ``patch_size``, ``embed_dim``, ``depth``, ``num_heads``, ``global_attn_indexes``,
        ``window_size``, ``mlp_ratio``, ``out_chans``, ``mask_in_chans``, ``decoder_depth``,
        ``decoder_mlp_dim``, ``num_multimask_outputs``, ``iou_head_depth``, ``iou_head_hidden_dim`` and
        ``variant`` (``vit_b``/``vit_l``/``vit_h`` when it is a released shape, else ``None``).

    Raises:
        `InputError`: the tensors are not those of a ``segment_anything`` ``Sam``.
    """
    try:
        proj = state_dict["image_encoder.patch_embed.proj.weight"]
        pos = state_dict["image_encoder.pos_embed"]
        embed_dim, _, patch, _ = (int(v) for v in proj.shape)
        grid = int(pos.shape[1])
        depth = 1 + max(int(m.group(1)) for k in state_dict
                        if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k)))
        sizes, head_dim = [], None
        for i in range(depth):
            rel = state_dict[f"image_encoder.blocks.{i}.attn.rel_pos_h"]
            sizes.append((int(rel.shape[0]) + 1) // 2)
            head_dim = int(rel.shape[1])
        global_idx = tuple(i for i, s in enumerate(sizes) if s == grid)
        windowed = [s for s in sizes if s != grid]
        mlp_dim = int(state_dict["image_encoder.blocks.0.mlp.lin1.weight"].shape[0])
        out_chans = int(state_dict["image_encoder.neck.0.weight"].shape[0])
        mask_in_chans = int(state_dict["prompt_encoder.mask_downscaling.3.weight"].shape[0])
        decoder_depth = 1 + max(int(m.group(1)) for k in state_dict
                                if (m := re.match(r"mask_decoder\.transformer\.layers\.(\d+)\.", k)))
        decoder_mlp = int(state_dict["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0])
        mask_tokens = int(state_dict["mask_decoder.mask_tokens.weight"].shape[0])
        iou_layers = 1 + max(int(m.group(1)) for k in state_dict
                             if (m := re.match(r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\.", k)))
        iou_hidden = int(state_dict["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0])
    except (KeyError, ValueError, AttributeError, IndexError) as exc:
        raise InputError(f"not a segment_anything Sam state dict (missing or odd {exc})") from None
    arch = {
        "img_size": grid * patch, "patch_size": patch, "embed_dim": embed_dim, "depth": depth,
        "num_heads": embed_dim // head_dim, "global_attn_indexes": global_idx,
        "window_size": windowed[0] if windowed else 0, "mlp_ratio": mlp_dim / embed_dim, "out_chans": out_chans,
        "mask_in_chans": mask_in_chans, "decoder_depth": decoder_depth, "decoder_mlp_dim": decoder_mlp,
        "num_multimask_outputs": mask_tokens - 1, "iou_head_depth": iou_layers, "iou_head_hidden_dim": iou_hidden,
    }
    released = (arch["img_size"] == 1024 and patch == 16 and arch["window_size"] == 14 and out_chans == 256
                and mlp_dim == 4 * embed_dim and mask_in_chans == 16 and decoder_depth == 2 and decoder_mlp == 2048
                and iou_layers == 3 and iou_hidden == 256 and mask_tokens == 4)
    arch["variant"] = None
    for name, v in SAM_VARIANTS.items():
        if released and all(arch[k] == v[k] for k in v):
            arch["variant"] = name
    return arch


def build_original_sam(arch: dict[str, Any]):
    """A ``segment_anything`` ``Sam`` (random weights) of the given `infer_sam_architecture` result."""
    sa = _require("segment_anything", "segment-anything==1.0 torchvision")
    if arch.get("variant"):
        return sa.sam_model_registry[arch["variant"]](checkpoint=None)
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = arch["img_size"] // arch["patch_size"]
    prompt_dim = arch["out_chans"]
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=arch["img_size"], patch_size=arch["patch_size"], in_chans=3, embed_dim=arch["embed_dim"],
            depth=arch["depth"], num_heads=arch["num_heads"], mlp_ratio=arch["mlp_ratio"], out_chans=prompt_dim,
            qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            rel_pos_zero_init=True, window_size=arch["window_size"], global_attn_indexes=arch["global_attn_indexes"],
        ),
        prompt_encoder=PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(arch["img_size"], arch["img_size"]),
                                     mask_in_chans=arch["mask_in_chans"]),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=arch["num_multimask_outputs"],
            transformer=TwoWayTransformer(depth=arch["decoder_depth"], embedding_dim=prompt_dim,
                                          mlp_dim=arch["decoder_mlp_dim"], num_heads=SAM_DECODER_HEADS),
            transformer_dim=prompt_dim, iou_head_depth=arch["iou_head_depth"],
            iou_head_hidden_dim=arch["iou_head_hidden_dim"],
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def load_original_sam(checkpoint: str | Path):
    """Build and load a ``segment_anything`` ``Sam`` from a ``.pth`` state dict (strictly: every key must match).

    Returns:
        `tuple`: the model in eval mode, and the inferred architecture (`infer_sam_architecture`).
    """
    state = load_torch_checkpoint(checkpoint)
    try:
        arch = infer_sam_architecture(state)
    except InputError as exc:
        raise InputError(exc.message, checkpoint) from None
    model = build_original_sam(arch)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"the checkpoint does not match the inferred architecture {arch}: {exc}",
                         checkpoint) from None
    return model.eval(), arch


class OriginalSamPredictor:
    """Masks from boxes with ``segment_anything``'s ``SamPredictor`` (see `pipelines.segmentation.grounded_sam.pipeline`)."""

    def __init__(self, model, device: str = "cpu"):
        sa = _require("segment_anything", "segment-anything==1.0 torchvision")
        self.model = model.to(device).eval()
        self.predictor = sa.SamPredictor(self.model)

    def set_image(self, image: np.ndarray) -> None:
        """``image``: HxWx3 uint8 RGB; computes the image embedding once for every later box."""
        import torch

        with torch.inference_mode():
            self.predictor.set_image(image, image_format="RGB")

    def predict_low_res(self, boxes_xyxy: np.ndarray):
        """Low-resolution mask logits ``(N, 256, 256)`` and predicted IoUs ``(N,)`` for XYXY pixel boxes."""
        import torch

        p = self.predictor
        with torch.inference_mode():
            boxes = torch.as_tensor(np.asarray(boxes_xyxy, np.float32), device=p.device)
            boxes = p.transform.apply_boxes_torch(boxes, p.original_size)
            sparse, dense = self.model.prompt_encoder(points=None, boxes=boxes, masks=None)
            low, iou = self.model.mask_decoder(
                image_embeddings=p.features, image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)
        return low[:, 0].float(), iou[:, 0].float().cpu().numpy()

    def upscale(self, low_res_logits) -> np.ndarray:
        """``(K, h, w)`` low-resolution logits to ``(K, H, W)`` float32 probabilities at the image's size."""
        import torch

        p = self.predictor
        with torch.inference_mode():
            up = self.model.postprocess_masks(low_res_logits[:, None].to(p.device), p.input_size, p.original_size)
            return torch.sigmoid(up[:, 0]).float().cpu().numpy()


# --------------------------------------------------------------------------------------------------
# groundingdino-py
# --------------------------------------------------------------------------------------------------


def _compat_warper_class():
    import torch
    from torch import nn
    from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

    class CompatBertModelWarper(nn.Module):
        """groundingdino-py's ``BertModelWarper`` for transformers 5: same sub-modules, own attention mask.

        ``attention_mask`` may be ``(B, T)`` (padding) or ``(B, T, T)`` (GroundingDINO's sub-sentence mask);
        1 = attend. It becomes the additive ``(B, 1, T|1, T)`` mask the BERT layers add to their scores,
        exactly as transformers 4's ``get_extended_attention_mask`` made it.
        """

        def __init__(self, bert_model):
            super().__init__()
            self.config = bert_model.config
            self.embeddings = bert_model.embeddings
            self.encoder = bert_model.encoder
            self.pooler = bert_model.pooler

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                    inputs_embeds=None, **unused):
            if input_ids is None and inputs_embeds is None:
                raise ValueError("pass input_ids or inputs_embeds")
            shape = input_ids.shape if input_ids is not None else inputs_embeds.shape[:-1]
            device = input_ids.device if input_ids is not None else inputs_embeds.device
            if attention_mask is None:
                attention_mask = torch.ones(shape, device=device)
            if token_type_ids is None:
                token_type_ids = torch.zeros(shape, dtype=torch.long, device=device)
            hidden = self.embeddings(input_ids=input_ids, position_ids=position_ids, token_type_ids=token_type_ids,
                                     inputs_embeds=inputs_embeds)
            extended = attention_mask[:, None, :, :] if attention_mask.dim() == 3 else attention_mask[:, None, None, :]
            extended = (1.0 - extended.to(hidden.dtype)) * torch.finfo(hidden.dtype).min
            sequence = self.encoder(hidden, attention_mask=extended)[0]
            pooled = self.pooler(sequence) if self.pooler is not None else None
            return BaseModelOutputWithPoolingAndCrossAttentions(last_hidden_state=sequence, pooler_output=pooled)

    return CompatBertModelWarper


def needs_bert_compat() -> bool:
    """Whether this transformers lacks what groundingdino-py's ``BertModelWarper`` calls."""
    from transformers import BertModel

    return not hasattr(BertModel, "get_extended_attention_mask")


@contextlib.contextmanager
def bert_compat() -> Iterator[None]:
    """While inside, groundingdino-py builds its text encoder with `CompatBertModelWarper` (when needed)."""
    gd = _require("groundingdino.models.GroundingDINO.groundingdino", "groundingdino-py==0.4.0 torchvision")
    if not needs_bert_compat():
        yield
        return
    original = gd.BertModelWarper
    gd.BertModelWarper = _compat_warper_class()
    try:
        yield
    finally:
        gd.BertModelWarper = original


def read_original_config(path: str | Path) -> dict[str, Any]:
    """Read a groundingdino-py config (``GroundingDINO_SwinT_OGC.cfg.py``) without executing it.

    Raises:
        `InputError`: a statement other than ``name = <literal>`` (the released configs have only those).
    """
    path = Path(path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the GroundingDINO config: {exc}", path) from None
    cfg: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # docstring
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise InputError(f"line {node.lineno}: only 'name = value' assignments are supported", path)
        try:
            cfg[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise InputError(f"line {node.lineno}: {node.targets[0].id} is not a literal value", path) from None
    if cfg.get("modelname") != "groundingdino":
        raise InputError(f"not a groundingdino config (modelname={cfg.get('modelname')!r})", path)
    return cfg


def build_original_grounding_dino(config: str | Path | dict[str, Any], *, text_encoder: str | Path):
    """Build a groundingdino-py ``GroundingDINO`` (random weights) from its config, on transformers 5.

    Args:
        config (`str | Path | dict`): the ``*.cfg.py`` file, or its parsed contents.
        text_encoder (`str | Path`): the folder of ``bert-base-uncased`` (config, weights, tokenizer); it
            replaces the config's ``text_encoder_type`` so that nothing is fetched from the hub.
    """
    _require("groundingdino", "groundingdino-py==0.4.0 torchvision")
    cfg = dict(read_original_config(config) if not isinstance(config, dict) else config)
    cfg["text_encoder_type"] = str(text_encoder)
    cfg["device"] = "cpu"
    out = io.StringIO()
    with bert_compat(), contextlib.redirect_stdout(out), quiet_loading():  # it prints while building
        from groundingdino.models import build_model
        from groundingdino.util.slconfig import SLConfig

        model = build_model(SLConfig(cfg))
    if out.getvalue().strip():
        logger.debug("groundingdino: %s", out.getvalue().strip())
    return model.eval()


def load_original_grounding_dino(config: str | Path, weights: str | Path, *, text_encoder: str | Path):
    """Build groundingdino-py's model from ``config`` and load ``weights`` (``{"model": state_dict}``).

    Like the upstream loader, keys are matched non-strictly (buffers such as BERT's ``position_ids``
    differ between transformers versions), but a checkpoint missing more than 2% of the model's
    parameters is refused: it was made for another config.
    """
    model = build_original_grounding_dino(config, text_encoder=text_encoder)
    ckpt = load_torch_checkpoint(weights)
    state = ckpt.get("model", ckpt)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise InputError(f"the checkpoint does not match {Path(config).name}: {exc}", weights) from None
    params = {k for k, _ in model.named_parameters()}
    missing = [k for k in result.missing_keys if k in params]
    if len(missing) > MAX_MISSING_FRACTION * len(params):
        raise InputError(f"the checkpoint lacks {len(missing)} of the model's {len(params)} parameters "
                         f"(e.g. {missing[:3]}); is it made for {Path(config).name}?", weights)
    if missing or result.unexpected_keys:
        logger.warning("%s: %d missing parameters %s, %d unexpected keys %s", weights, len(missing), missing[:5],
                       len(result.unexpected_keys), result.unexpected_keys[:5])
    return model


class OriginalGroundingDinoDetector:
    """Boxes from text with a groundingdino-py model (see `pipelines.segmentation.grounded_sam.pipeline`).

    Pre-processing follows the upstream demo: shorter side resized to 800 (longer side at most 1333),
    ImageNet normalisation. ``shorter_side``/``max_side`` can be lowered for tiny test models.
    """

    def __init__(self, model, device: str = "cpu", *, shorter_side: int = ORIGINAL_SHORTER_SIDE,
                 max_side: int = ORIGINAL_MAX_SIDE):
        self.model = model.to(device).eval()
        self.device = device
        self.shorter_side = shorter_side
        self.max_side = max_side

    def _pixels(self, image: np.ndarray):
        import torch
        from PIL import Image

        h, w = image.shape[:2]
        scale = self.shorter_side / min(h, w)
        if max(h, w) * scale > self.max_side:
            scale = self.max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        resized = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR), np.float32) / 255.0
        arr = (resized - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None].to(self.device)

    def detect(self, image: np.ndarray, phrases: list[str]):
        """Run the model on ``image`` (HxWx3 uint8 RGB) with ``phrases``; returns a `DetectorOutput`."""
        import torch

        caption = caption_for(phrases)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.cuda.amp.autocast inside groundingdino
            warnings.filterwarnings("ignore", message=".*meshgrid.*", category=UserWarning)
            outputs = self.model(self._pixels(image), captions=[caption])
        probs = torch.sigmoid(outputs["pred_logits"][0].float()).cpu().numpy()
        boxes = outputs["pred_boxes"][0].float().cpu().numpy()
        ids = self.model.tokenizer(caption)["input_ids"][: probs.shape[1]]
        spans = phrase_spans(ids, structural_ids(self.model.tokenizer))
        tokens = self.model.tokenizer.convert_ids_to_tokens(ids)
        decoded = [self.model.tokenizer.decode([ids[p] for p in s]) for s in spans]
        return DetectorOutput(probs, boxes, spans, match_spans(spans, phrases, decoded),
                              (int(image.shape[1]), int(image.shape[0])), tokens)
