"""Tiny random segmentation models in the real repo layouts (``vitrine dev tiny-models DIR``).

Written under ``DIR/<org>/<name>/`` exactly where the real snapshots go, so the real loading code
(`pipelines.segmentation.grounded_sam.loading`) runs on them unchanged:

- ``grounding-dino``: ``IDEA-Research/grounding-dino-{tiny,base}`` (transformers ``GroundingDinoConfig``
  + ``GroundingDinoProcessor`` with a locally built BERT WordPiece tokenizer);
- ``sam``: ``facebook/sam-vit-{base,huge}`` (``SamConfig`` + ``SamProcessor``);
- ``sam-hq``: ``syscv-community/sam-hq-vit-base``; ``sam2``: ``facebook/sam2.1-hiera-tiny``;
- ``sam-original``: ``ybelkada/segment-anything/checkpoints/sam_vit_b_01ec64.pth``, a tiny
  ``segment_anything.modeling.Sam`` state dict (the loader infers the architecture from the tensors);
- ``groundingdino-py``: ``ShilongLiu/GroundingDINO`` (``GroundingDINO_SwinT_OGC.cfg.py`` +
  ``groundingdino_swint_ogc.pth``) and its text encoder ``google-bert/bert-base-uncased``. groundingdino-py
  can only build its fixed Swin-T backbone (28M parameters), so this checkpoint is ~60 MB (stored in fp16).

Every builder is seeded: the same call writes the same weights. Nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pipelines.models.segmentation_models import (
    BERT_BASE_UNCASED,
    GROUNDING_DINO_ORIGINAL_REPO,
    SAM_ORIGINAL_REPO,
)

logger = logging.getLogger(__name__)

SEED = 0
#: bert-base-uncased ids that GroundingDINO hard-codes ([CLS], [SEP], ".", "?") and the usual specials.
BERT_FIXED_IDS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}
#: Words the tiny vocabulary holds whole (everything else falls back to characters).
TINY_WORDS = (  # noqa: SIM905 - a sentence reads better than 90 quoted words
    "a an the of and with on in person people human body model woman man face head hair hand hands arm "
    "shirt t-shirt tee top blouse sweater hoodie cardigan polo tank jumper pullover trousers pants jeans "
    "shorts skirt leggings dress gown jumpsuit jacket coat blazer parka vest shoe shoes sneaker sneakers "
    "boot boots sandal heel heels bag handbag tote backpack purse clutch garment clothing product cat "
    "remote control red blue white black wool cotton"
).split()

TINY_GROUNDING_DINO_IDS = ("IDEA-Research/grounding-dino-tiny", "IDEA-Research/grounding-dino-base")
TINY_SAM_IDS = ("facebook/sam-vit-base", "facebook/sam-vit-huge")
TINY_SAM_HQ_IDS = ("syscv-community/sam-hq-vit-base",)
TINY_SAM2_IDS = ("facebook/sam2.1-hiera-tiny",)
TINY_SAM_ORIGINAL_FILE = "checkpoints/sam_vit_b_01ec64.pth"
#: Text-encoder type written into the tiny groundingdino-py config; the loader replaces it with the
#: located ``google-bert/bert-base-uncased`` folder, exactly as it does for the real configs.
ORIGINAL_TEXT_ENCODER = "bert-base-uncased"


def bert_vocab(min_size: int = 1100) -> list[str]:
    """A WordPiece vocabulary with bert-base-uncased's ids for the tokens GroundingDINO hard-codes.

    Returns:
        `list[str]`: token at each id; ``[CLS]`` = 101, ``[SEP]`` = 102, ``.`` = 1012, ``?`` = 1029.
    """
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    chars += list("!\"#$%&'()*+,-/:;<=>@[\\]^_`{|}~")
    words = [w for w in dict.fromkeys(TINY_WORDS) if "-" not in w]
    pieces = list(dict.fromkeys(words + chars + ["##" + c for c in chars]))
    size = max(min_size, max(BERT_FIXED_IDS) + 1)
    vocab: list[str | None] = [None] * size
    for i, tok in BERT_FIXED_IDS.items():
        vocab[i] = tok
    rest = iter(p for p in pieces if p not in BERT_FIXED_IDS.values())
    for i in range(size):
        if vocab[i] is None:
            vocab[i] = next(rest, f"[unused{i}]")
    return [str(t) for t in vocab]


def make_bert_tokenizer():
    """A transformers ``BertTokenizer`` over `bert_vocab` (lower-casing, like bert-base-uncased)."""
    from transformers import BertTokenizer

    vocab = {tok: i for i, tok in enumerate(bert_vocab())}
    return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=512)


def save_bert_tokenizer(folder: Path) -> None:
    """The tokenizer files of a bert-base-uncased style repo: tokenizer.json, tokenizer_config.json, vocab.txt."""
    make_bert_tokenizer().save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(bert_vocab()) + "\n", encoding="utf-8")


def _quiet():
    """No progress bars while writing (see `pipelines.segmentation.grounded_sam.quiet.quiet_loading`)."""
    from pipelines.segmentation.grounded_sam.quiet import quiet_loading

    return quiet_loading()


def _fresh(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --------------------------------------------------------------------------------------------------
# transformers GroundingDINO
# --------------------------------------------------------------------------------------------------


def tiny_grounding_dino_config():
    """A ~0.3M-parameter ``GroundingDinoConfig`` (Swin backbone of width 8, d_model 32, 10 queries)."""
    from transformers import GroundingDinoConfig, SwinConfig

    swin = SwinConfig(window_size=7, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], image_size=98,
                      out_features=["stage2", "stage3", "stage4"], out_indices=[2, 3, 4])
    text = {"model_type": "bert", "vocab_size": len(bert_vocab()), "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 8, "max_position_embeddings": 256}
    return GroundingDinoConfig(
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=8, decoder_ffn_dim=8, num_queries=10, num_feature_levels=4, encoder_n_points=2,
        decoder_n_points=2, use_timm_backbone=False, backbone_config=swin, max_text_len=256, text_config=text,
    )


def write_tiny_grounding_dino(folder: Path) -> Path:
    """Write a tiny ``GroundingDinoForObjectDetection``, its image processor and BERT tokenizer to ``folder``."""
    import torch
    from transformers import GroundingDinoForObjectDetection, GroundingDinoImageProcessor

    torch.manual_seed(SEED)
    model = GroundingDinoForObjectDetection(tiny_grounding_dino_config()).eval()
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 128})
    model.save_pretrained(_fresh(folder))
    # The published repos hold preprocessor_config.json + the tokenizer files (no processor_config.json).
    image_processor.save_pretrained(folder)
    save_bert_tokenizer(folder)
    return folder


def build_grounding_dino(dest: Path) -> list[str]:
    with _quiet():
        for model_id in TINY_GROUNDING_DINO_IDS:
            write_tiny_grounding_dino(Path(dest) / model_id)
    return list(TINY_GROUNDING_DINO_IDS)


# --------------------------------------------------------------------------------------------------
# transformers SAM, SAM-HQ, SAM2
# --------------------------------------------------------------------------------------------------


def _tiny_sam_parts(hq: bool = False) -> dict:
    import transformers as tf

    prefix = "SamHQ" if hq else "Sam"
    vision = getattr(tf, f"{prefix}VisionConfig")(
        hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2, image_size=64,
        patch_size=8, window_size=4, global_attn_indexes=[1], num_pos_feats=8, mlp_dim=64,
    )
    prompt = getattr(tf, f"{prefix}PromptEncoderConfig")(hidden_size=16, image_size=64, patch_size=8,
                                                         mask_input_channels=4)
    decoder_kwargs = {"hidden_size": 16, "mlp_dim": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                      "iou_head_hidden_dim": 16}
    if hq:
        decoder_kwargs["vit_dim"] = 32
    decoder = getattr(tf, f"{prefix}MaskDecoderConfig")(**decoder_kwargs)
    return {"vision_config": vision, "prompt_encoder_config": prompt, "mask_decoder_config": decoder}


def _tiny_sam_image_processor():
    from transformers import SamImageProcessor

    return SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                             mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16})


def write_tiny_sam(folder: Path) -> Path:
    """Write a tiny ``SamModel`` (64 px input) + its image processor to ``folder``."""
    import torch
    from transformers import SamConfig, SamModel

    torch.manual_seed(SEED)
    SamModel(SamConfig(**_tiny_sam_parts())).eval().save_pretrained(_fresh(folder))
    _tiny_sam_image_processor().save_pretrained(folder)  # preprocessor_config.json, as published
    return folder


def write_tiny_sam_hq(folder: Path) -> Path:
    """Write a tiny ``SamHQModel`` + its image processor to ``folder``."""
    import torch
    from transformers import SamHQConfig, SamHQModel

    torch.manual_seed(SEED)
    SamHQModel(SamHQConfig(**_tiny_sam_parts(hq=True))).eval().save_pretrained(_fresh(folder))
    _tiny_sam_image_processor().save_pretrained(folder)
    return folder


def write_tiny_sam2(folder: Path) -> Path:
    """Write a tiny ``Sam2Model`` (128 px Hiera) + its image processor to ``folder``."""
    import torch
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2ImageProcessor,
        Sam2MaskDecoderConfig,
        Sam2Model,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    hiera = Sam2HieraDetConfig(hidden_size=12, num_channels=3, image_size=128, patch_stride=4, patch_kernel_size=7,
                               patch_padding=3, blocks_per_stage=[1, 2, 7, 2], embed_dim_per_stage=[12, 24, 48, 96])
    vision = Sam2VisionConfig(backbone_config=hiera, backbone_channel_list=[96, 48, 24, 12],
                              backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]], fpn_hidden_size=32)
    prompt = Sam2PromptEncoderConfig(hidden_size=32, image_size=128, patch_size=16, mask_input_channels=8)
    decoder = Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=4,
                                    iou_head_hidden_dim=32)
    config = Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder,
                        image_size=128)
    torch.manual_seed(SEED)
    Sam2Model(config).eval().save_pretrained(_fresh(folder))
    Sam2ImageProcessor(size={"height": 128, "width": 128}, mask_size={"height": 32, "width": 32}
                       ).save_pretrained(folder)
    return folder


def build_sam(dest: Path) -> list[str]:
    with _quiet():
        for model_id in TINY_SAM_IDS:
            write_tiny_sam(Path(dest) / model_id)
    return list(TINY_SAM_IDS)


def build_sam_hq(dest: Path) -> list[str]:
    with _quiet():
        for model_id in TINY_SAM_HQ_IDS:
            write_tiny_sam_hq(Path(dest) / model_id)
    return list(TINY_SAM_HQ_IDS)


def build_sam2(dest: Path) -> list[str]:
    with _quiet():
        for model_id in TINY_SAM2_IDS:
            write_tiny_sam2(Path(dest) / model_id)
    return list(TINY_SAM2_IDS)


# --------------------------------------------------------------------------------------------------
# Original-format checkpoints
# --------------------------------------------------------------------------------------------------


#: The tiny original-format SAM: a ViT of width 32 with 2 blocks (the 2nd global) on 64 px inputs.
TINY_ORIGINAL_SAM_ARCH = {
    "img_size": 64, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "global_attn_indexes": (1,),
    "window_size": 4, "mlp_ratio": 2.0, "out_chans": 16, "mask_in_chans": 4, "decoder_depth": 2,
    "decoder_mlp_dim": 32, "num_multimask_outputs": 3, "iou_head_depth": 3, "iou_head_hidden_dim": 16,
    "variant": None,
}


def tiny_original_sam():
    """A tiny ``segment_anything.modeling.Sam`` of `TINY_ORIGINAL_SAM_ARCH`, seeded."""
    import torch

    from pipelines.segmentation.grounded_sam.original import build_original_sam

    torch.manual_seed(SEED)
    return build_original_sam(TINY_ORIGINAL_SAM_ARCH).eval()


def build_sam_original(dest: Path) -> list[str]:
    import torch

    path = Path(dest) / SAM_ORIGINAL_REPO / TINY_SAM_ORIGINAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_original_sam().state_dict(), path)  # the released files are plain state dicts too
    return [SAM_ORIGINAL_REPO]


def write_tiny_bert(folder: Path) -> Path:
    """A tiny ``BertModel`` + tokenizer where ``google-bert/bert-base-uncased`` goes."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(SEED)
    config = BertConfig(vocab_size=len(bert_vocab()), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=512)
    BertModel(config).eval().save_pretrained(_fresh(folder))
    save_bert_tokenizer(folder)
    return folder


#: Settings that make the original GroundingDINO tiny (only the Swin-T backbone keeps its real size).
TINY_ORIGINAL_OVERRIDES = {
    "enc_layers": 1, "dec_layers": 1, "dim_feedforward": 32, "num_queries": 10,
    "use_checkpoint": False, "use_transformer_ckpt": False,
}


def original_grounding_dino_config_text(**overrides) -> str:
    """The packaged ``GroundingDINO_SwinT_OGC.py`` config with ``overrides`` applied (Python source)."""
    from importlib.resources import files

    text = files("groundingdino").joinpath("config/GroundingDINO_SwinT_OGC.py").read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line else None
        if key in overrides:
            line = f"{key} = {overrides[key]!r}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def build_grounding_dino_original(dest: Path) -> list[str]:
    import torch

    from pipelines.segmentation.grounded_sam.original import build_original_grounding_dino

    dest = Path(dest)
    with _quiet():
        bert = write_tiny_bert(dest / BERT_BASE_UNCASED)
    folder = _fresh(dest / GROUNDING_DINO_ORIGINAL_REPO)
    config_path = folder / "GroundingDINO_SwinT_OGC.cfg.py"
    config_path.write_text(original_grounding_dino_config_text(**TINY_ORIGINAL_OVERRIDES), encoding="utf-8")
    torch.manual_seed(SEED)
    model = build_original_grounding_dino(config_path, text_encoder=bert)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save({"model": state}, folder / "groundingdino_swint_ogc.pth")
    (folder / "tiny.json").write_text(json.dumps({"note": "tiny random weights for tests, not a real model"}))
    return [GROUNDING_DINO_ORIGINAL_REPO, BERT_BASE_UNCASED]
