"""Real-architecture random models (``vitrine dev real-arch-models DIR``): the published configs of the real
checkpoints at **real width and minimal depth**, in the real repo layouts and file formats.

Where `pipelines.dev_models.tiny_generation` writes toy widths (hidden size 32, a 4-channel VAE) that let the
loader and the layouts agree with each other, this module writes what the real repos hold, so the loader
meets reality: a 16-channel FLUX VAE with its ``scaling_factor`` 0.3611 / ``shift_factor`` 0.1159, a T5-XXL
encoder with ``d_model`` 4096 and the real 32128-row vocabulary in sharded safetensors with an index, CLIP-L
with 49408 rows (BOS 49406, EOS 49407, as the real tokenizer numbers them), FLUX transformers with 3072-wide
blocks, 64 / 384 input channels (dev / Fill), the SDXL UNet with its 320/640/1280 channels, 2048-dim
cross-attention and 2816 add-embeddings, fp16 variant files beside the fp32 ones, GroundingDINO-tiny and
SAM ViT-B **at full size** (every layer). Depth is cut to 1 layer per block where a config allows it
(``num_layers=1, num_single_layers=1`` for FLUX, ``num_layers=1`` for T5 and CLIP, ``layers_per_block=1`` and
``transformer_layers_per_block=[1, 1, 1]`` for SDXL, ``layers_per_block=1`` for the VAEs, ControlNets with
1 double block and no single blocks). Weights are random (seeded), written in the dtype the real repos use
(bf16 for FLUX, fp32 + fp16 variants for SDXL).

The configs below are the published ``config.json`` / ``model_index.json`` / ``scheduler_config.json`` of each
repo (source named on each), with only the depth keys overridden by `DEPTH_OVERRIDES`. Nothing is
downloaded: the files were written here from those published values.

Layouts written under ``DIR``:

- ``black-forest-labs/FLUX.1-dev`` (transformer sharded + index, vae, text_encoder, text_encoder_2 sharded +
  index, tokenizer = CLIP vocab.json + merges.txt, tokenizer_2 = T5 tokenizer.json, scheduler); FLUX.1-Fill-dev
  and FLUX.1-Kontext-dev (their own transformers; the text encoders/VAE/tokenizers are hard links of the
  dev files, byte-identical as in the real repos);
- ``InstantX/FLUX.1-dev-Controlnet-Canny`` (non-union) and ``Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro``
  (union, ``num_mode`` 10);
- ``stabilityai/stable-diffusion-xl-base-1.0`` with fp32 files and ``*.fp16.safetensors`` variants beside them
  (a full snapshot), ``diffusers/stable-diffusion-xl-1.0-inpainting-0.1`` and ``diffusers/controlnet-canny-sdxl-1.0``
  with fp16 variant files only (what ``hf download --include "*.fp16.safetensors"`` leaves);
- ``IDEA-Research/grounding-dino-tiny`` (Swin-T + BERT-base, 900 queries; BERT vocab.txt of 30522 words) and
  ``facebook/sam-vit-base`` (ViT-B, 1024 px), full size.

`fp16_only_copy` makes an fp16-only download of a repo (hard links), `hf_cache_snapshot` a Hugging Face cache
layout (``models--org--name/snapshots/<hash>/``, files as links into ``blobs/``).

Sizes on disk (about): FLUX family 5.4 GB, SDXL 3.3 GB, segmentation 0.8 GB.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from pipelines.models.published_configs import (  # noqa: F401 - the published configs, used and re-exported
    FLUX_DEV_TRANSFORMER,
    FLUX_FILL_TRANSFORMER,
    FLUX_KONTEXT_TRANSFORMER,
    FLUX_VAE,
    FLUX_SCHEDULER,
    CLIP_L,
    T5_XXL,
    FLUX_MODEL_INDEX,
    FLUX_CANNY_CONTROLNET,
    FLUX_UNION_CONTROLNET,
    SDXL_UNET,
    SDXL_INPAINT_UNET,
    SDXL_VAE,
    CLIP_BIGG,
    SDXL_SCHEDULER,
    SDXL_MODEL_INDEX,
    SDXL_INPAINT_MODEL_INDEX,
    SDXL_CANNY_CONTROLNET,
)

logger = logging.getLogger(__name__)

SEED = 0
FLUX_DEV = "black-forest-labs/FLUX.1-dev"
FLUX_FILL = "black-forest-labs/FLUX.1-Fill-dev"
FLUX_KONTEXT = "black-forest-labs/FLUX.1-Kontext-dev"
FLUX_CANNY_CN = "InstantX/FLUX.1-dev-Controlnet-Canny"
FLUX_UNION_CN = "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro"
SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_INPAINT = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
SDXL_CANNY_CN = "diffusers/controlnet-canny-sdxl-1.0"
GROUNDING_DINO_TINY = "IDEA-Research/grounding-dino-tiny"
SAM_BASE = "facebook/sam-vit-base"

# ------------------------------------------------------------------------------------------ published configs
#: The published configs live in `pipelines.models.published_configs` (full values, each citing its repo file).

#: The only keys changed from the published configs: depth (1 layer per block where the config allows it).
DEPTH_OVERRIDES: dict[str, dict[str, Any]] = {
    "flux_transformer": {"num_layers": 1, "num_single_layers": 1},
    "flux_controlnet": {"num_layers": 1, "num_single_layers": 0},
    "vae": {"layers_per_block": 1},
    "clip": {"num_hidden_layers": 1},
    "t5": {"num_layers": 1, "num_decoder_layers": 1},
    "sdxl_unet": {"layers_per_block": 1, "transformer_layers_per_block": [1, 1, 1]},
}

#: Prompts the locally trained tokenizers see (the real vocabularies are padded to their published sizes).
CORPUS = [
    "a fashion model wearing a navy t-shirt, full body, professional e-commerce photo, sharp focus",
    "a woman wearing a red dress in a bright photo studio with a seamless light grey backdrop",
    "a man in a blue shirt and jeans, studio lighting, soft diffused light, natural relaxed pose",
    "a canvas tote bag in front of a softly textured neutral plaster wall, natural window light",
    "put the garment on the person, keep the face, the pose and the background unchanged",
    "lowres, blurry, deformed hands, extra limbs, text, watermark, logo, jacket, hoodie, skirt, shoes",
    "the quick brown fox jumps over the lazy dog 0123456789 ?!,.;:'\"()[]{}-_/\\",
] * 10


def _config(published: dict, depth: str) -> dict:
    """The published config without its ``_`` keys, with the depth overrides of `DEPTH_OVERRIDES`."""
    cfg = {k: copy.deepcopy(v) for k, v in published.items() if not k.startswith("_") and k != "architectures"}
    cfg.update(DEPTH_OVERRIDES[depth])
    return cfg


def _seed(offset: int = 0) -> None:
    import torch

    torch.manual_seed(SEED + offset)


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _link_tree(src: Path, dest: Path) -> None:
    """Hard-link every file of ``src`` under ``dest`` (copy across file systems)."""
    for path in sorted(src.rglob("*")):
        target = dest / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------------ tokenizers
def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """CLIP byte-level BPE (vocab.json + merges.txt) with the real 49408 ids: learned pieces first, then unused
    fillers, ``<|startoftext|>`` = 49406 and ``<|endoftext|>`` = 49407 (CLIP pools at the highest id, EOS).

    Args:
        pad_token (`str`, *optional*): ``<|endoftext|>`` (FLUX, SDXL ``tokenizer``) or ``!`` (SDXL ``tokenizer_2``).
    """
    from transformers import CLIPTokenizer

    from pipelines.dev_models.tiny_generation import make_clip_tokenizer

    learned = make_clip_tokenizer(vocab_size=2000)
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    pieces = [t for t, _ in sorted(learned.get_vocab().items(), key=lambda kv: kv[1]) if t not in (bos, eos)]
    vocab = {t: i for i, t in enumerate(pieces)}
    for i in range(len(vocab), 49406):
        vocab[f"<|unused{i}|>"] = i
    vocab[bos], vocab[eos] = 49406, 49407
    merges = json.loads(learned.backend_tokenizer.to_str())["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
    return CLIPTokenizer(vocab=vocab, merges=merges, bos_token=bos, eos_token=eos, unk_token=eos,
                         pad_token=pad_token, model_max_length=77)


def save_clip_tokenizer(tok, folder: Path) -> None:
    """As the published repos hold CLIP's tokenizer: vocab.json + merges.txt + tokenizer_config.json (no
    tokenizer.json; transformers converts the BPE files when loading)."""
    tok.save_pretrained(folder)
    model = json.loads(tok.backend_tokenizer.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    vocab = dict(sorted(tok.get_vocab().items(), key=lambda kv: kv[1]))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (folder / "tokenizer.json").unlink(missing_ok=True)


def t5_tokenizer():
    """T5 Unigram tokenizer (tokenizer.json) with the real layout: 32000 pieces (``<pad>`` 0, ``</s>`` 1,
    ``<unk>`` 2, learned pieces, unused fillers) + 100 ``<extra_id_*>`` = 32100 ids (the model has 32128 rows)."""
    import json as _json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=800, special_tokens=["<pad>", "</s>", "<unk>"],
                                                            unk_token="<unk>", show_progress=False))
    vocab = [tuple(x) for x in _json.loads(tok.to_str())["model"]["vocab"]]
    vocab += [(f"\u2581unused{i}", -100.0) for i in range(len(vocab), 32000)]
    return T5Tokenizer(vocab=vocab, extra_ids=100, model_max_length=512)


# ---------------------------------------------------------------------------------------------------- FLUX
def _save_transformers(model, folder: Path, dtype, *, shard: str | None = None) -> None:
    model.to(dtype).save_pretrained(folder, safe_serialization=True,
                                    **({"max_shard_size": shard} if shard else {}))


def write_flux_shared(repo: Path) -> None:
    """text_encoder (CLIP-L), text_encoder_2 (T5-XXL, sharded), tokenizers, VAE and scheduler of FLUX.1-dev."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    _seed(1)
    _save_transformers(CLIPTextModel(CLIPTextConfig(**_config(CLIP_L, "clip"))).eval(), repo / "text_encoder",
                       torch.bfloat16)
    _seed(2)
    t5 = T5EncoderModel(T5Config(**_config(T5_XXL, "t5"))).eval()
    _save_transformers(t5, repo / "text_encoder_2", torch.bfloat16, shard="300MB")
    del t5
    save_clip_tokenizer(clip_tokenizer(), repo / "tokenizer")
    t5_tokenizer().save_pretrained(repo / "tokenizer_2")
    _seed(3)
    AutoencoderKL(**_config(FLUX_VAE, "vae")).eval().to(torch.bfloat16).save_pretrained(repo / "vae")
    _write_json(repo / "scheduler" / "scheduler_config.json", FLUX_SCHEDULER)


def write_flux_transformer(folder: Path, published: dict, seed: int) -> None:
    import torch
    from diffusers import FluxTransformer2DModel

    _seed(seed)
    model = FluxTransformer2DModel(**_config(published, "flux_transformer")).eval().to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="500MB")


def write_flux_controlnet(folder: Path, published: dict, seed: int) -> None:
    import torch
    from diffusers import FluxControlNetModel

    _seed(seed)
    model = FluxControlNetModel(**_config(published, "flux_controlnet")).eval().to(torch.bfloat16)
    model.save_pretrained(_fresh(folder), safe_serialization=True)


def build_flux(dest: Path) -> list[str]:
    """FLUX.1-dev, Fill, Kontext and the two ControlNets (see the module docstring)."""
    dest = Path(dest)
    dev = _fresh(dest / FLUX_DEV)
    write_flux_shared(dev)
    write_flux_transformer(dev / "transformer", FLUX_DEV_TRANSFORMER, 10)
    _write_json(dev / "model_index.json", FLUX_MODEL_INDEX)
    for repo, cls, published, seed in ((FLUX_FILL, "FluxFillPipeline", FLUX_FILL_TRANSFORMER, 11),
                                       (FLUX_KONTEXT, "FluxKontextPipeline", FLUX_KONTEXT_TRANSFORMER, 12)):
        folder = _fresh(dest / repo)
        for part in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae", "scheduler"):
            _link_tree(dev / part, folder / part)
        write_flux_transformer(folder / "transformer", published, seed)
        _write_json(folder / "model_index.json", {**FLUX_MODEL_INDEX, "_class_name": cls})
    write_flux_controlnet(dest / FLUX_CANNY_CN, FLUX_CANNY_CONTROLNET, 13)
    write_flux_controlnet(dest / FLUX_UNION_CN, FLUX_UNION_CONTROLNET, 14)
    return [FLUX_DEV, FLUX_FILL, FLUX_KONTEXT, FLUX_CANNY_CN, FLUX_UNION_CN]


# ---------------------------------------------------------------------------------------------------- SDXL
def _save_with_fp16(model, folder: Path, *, fp32: bool = True) -> None:
    """fp32 files (when ``fp32``) and ``*.fp16.safetensors`` beside them, as the SDXL repos ship."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    if fp32:
        model.to(torch.float32).save_pretrained(folder, safe_serialization=True)
    model.to(torch.float16).save_pretrained(folder, safe_serialization=True, variant="fp16")


def write_sdxl_components(repo: Path, *, fp32: bool, shared_from: Path | None = None) -> None:
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if shared_from is not None:
        for part in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae"):
            src = shared_from / part
            for f in sorted(src.iterdir()):
                if fp32 or not f.name.endswith(".safetensors") or ".fp16." in f.name:
                    (repo / part).mkdir(parents=True, exist_ok=True)
                    try:
                        os.link(f, repo / part / f.name)
                    except OSError:
                        shutil.copy2(f, repo / part / f.name)
    else:
        _seed(20)
        _save_with_fp16(CLIPTextModel(CLIPTextConfig(**_config(CLIP_L, "clip"))).eval(), repo / "text_encoder", fp32=fp32)
        _seed(21)
        _save_with_fp16(CLIPTextModelWithProjection(CLIPTextConfig(**_config(CLIP_BIGG, "clip"))).eval(),
                        repo / "text_encoder_2", fp32=fp32)
        save_clip_tokenizer(clip_tokenizer(), repo / "tokenizer")
        save_clip_tokenizer(clip_tokenizer(pad_token="!"), repo / "tokenizer_2")
        _seed(22)
        _save_with_fp16(AutoencoderKL(**_config(SDXL_VAE, "vae")).eval(), repo / "vae", fp32=fp32)
    _write_json(repo / "scheduler" / "scheduler_config.json", SDXL_SCHEDULER)


def build_sdxl(dest: Path) -> list[str]:
    """SDXL base (fp32 + fp16 variants), the inpainting model and a canny ControlNet (fp16 variants only)."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    dest = Path(dest)
    base = _fresh(dest / SDXL_BASE)
    write_sdxl_components(base, fp32=True)
    _seed(23)
    _save_with_fp16(UNet2DConditionModel(**_config(SDXL_UNET, "sdxl_unet")).eval(), base / "unet", fp32=True)
    _write_json(base / "model_index.json", SDXL_MODEL_INDEX)
    inpaint = _fresh(dest / SDXL_INPAINT)
    write_sdxl_components(inpaint, fp32=False, shared_from=base)
    _seed(24)
    _save_with_fp16(UNet2DConditionModel(**_config(SDXL_INPAINT_UNET, "sdxl_unet")).eval(), inpaint / "unet",
                    fp32=False)
    _write_json(inpaint / "model_index.json", SDXL_INPAINT_MODEL_INDEX)
    _seed(25)
    cn_cfg = _config(SDXL_CANNY_CONTROLNET, "sdxl_unet")
    cn_cfg.pop("transformer_layers_per_block")
    cn = ControlNetModel(**cn_cfg, transformer_layers_per_block=[1, 1, 1]).eval()
    _save_with_fp16(cn, _fresh(dest / SDXL_CANNY_CN), fp32=False)
    return [SDXL_BASE, SDXL_INPAINT, SDXL_CANNY_CN]


def fp16_only_copy(src: Path, dest: Path) -> Path:
    """A copy of a diffusers repo as ``hf download --include "*.fp16.safetensors" "*.json" "*.txt"`` leaves it:
    every file except the non-variant weights (hard links)."""
    for path in sorted(src.rglob("*")):
        if path.is_dir():
            continue
        name = path.name
        if name.endswith(".safetensors") and ".fp16" not in name:
            continue
        if name.endswith(".safetensors.index.json") and ".fp16" not in name:
            continue
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    return dest


def hf_cache_snapshot(src: Path, cache: Path, model_id: str, revision: str = "main") -> Path:
    """Lay ``src`` out as the Hugging Face cache does: ``cache/models--org--name/blobs/<sha256>`` (hard links),
    ``snapshots/<commit>/<path>`` symlinks to them and ``refs/<revision>`` naming the commit.

    Returns:
        `Path`: the snapshot folder.
    """
    repo = cache / ("models--" + model_id.replace("/", "--"))
    files = sorted(p for p in src.rglob("*") if p.is_file())
    commit = hashlib.sha1("\n".join(str(p.relative_to(src)) for p in files).encode()).hexdigest()
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for path in files:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                h.update(chunk)
        blob = repo / "blobs" / h.hexdigest()
        if not blob.exists():
            try:
                os.link(path, blob)
            except OSError:
                shutil.copy2(path, blob)
        link = snap / path.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit, encoding="utf-8")
    return snap


# ------------------------------------------------------------------------------------------- segmentation
def build_segmentation(dest: Path) -> list[str]:
    """``IDEA-Research/grounding-dino-tiny`` and ``facebook/sam-vit-base`` at full size (transformers defaults
    are these two checkpoints' configs), with a BERT vocab.txt of bert-base-uncased's 30522 ids."""
    import torch
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        SamConfig,
        SamImageProcessor,
        SamModel,
    )

    from pipelines.dev_models.tiny_segmentation import bert_vocab

    dest = Path(dest)
    gd = _fresh(dest / GROUNDING_DINO_TINY)
    _seed(30)
    GroundingDinoForObjectDetection(GroundingDinoConfig()).eval().save_pretrained(gd, safe_serialization=True)
    GroundingDinoImageProcessor().save_pretrained(gd)  # shortest edge 800, longest 1333
    vocab = bert_vocab(30522)
    BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True, model_max_length=512).save_pretrained(gd)
    (gd / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    sam = _fresh(dest / SAM_BASE)
    _seed(31)
    SamModel(SamConfig()).eval().to(torch.float32).save_pretrained(sam, safe_serialization=True)
    SamImageProcessor().save_pretrained(sam)  # longest edge 1024, padded to 1024x1024
    return [GROUNDING_DINO_TINY, SAM_BASE]


#: family -> builder(dest) -> repo ids written.
BUILDERS = {"flux": build_flux, "sdxl": build_sdxl, "segmentation": build_segmentation}


def build_real_arch_models(dest: str | Path, families: list[str] | None = None) -> dict[str, list[str]]:
    """Write the real-architecture models of every family (or only ``families``) under ``dest``.

    Returns:
        `dict`: family -> repo ids written (each at ``dest/<org>/<name>/``).

    Raises:
        `ValueError`: an unknown family.
    """
    unknown = sorted(set(families or []) - set(BUILDERS))
    if unknown:
        raise ValueError(f"unknown model families {unknown}; known: {sorted(BUILDERS)}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    from pipelines.segmentation.grounded_sam.quiet import quiet_loading

    written = {}
    with quiet_loading():
        for family, builder in BUILDERS.items():
            if families is None or family in families:
                written[family] = builder(dest)
                _mark_built(dest, family, written[family])
                logger.info("real-architecture %s models: %s", family, written[family])
    return written


#: The file in a real-architecture model root that lists the families built completely (written after each).
BUILT_MARKER = ".vitrine-realarch.json"


def built_families(dest: str | Path) -> dict[str, list[str]]:
    """The families a previous `build_real_arch_models` finished under ``dest`` (family -> repo ids); a family
    interrupted mid-build is not listed. ``{}`` when nothing was built there."""
    try:
        data = json.loads((Path(dest) / BUILT_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): list(v) for k, v in data.get("families", {}).items()} if isinstance(data, dict) else {}


def _mark_built(dest: Path, family: str, repos: list[str]) -> None:
    done = {**built_families(dest), family: repos}
    tmp = dest / f"{BUILT_MARKER}.tmp"
    tmp.write_text(json.dumps({"families": done}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, dest / BUILT_MARKER)
