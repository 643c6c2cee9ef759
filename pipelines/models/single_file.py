"""Single-file checkpoints in the ComfyUI / A1111 layouts, found offline and made loadable without the hub.

A model root may hold, instead of (or beside an incomplete) ``DIR/<org>/<name>/`` diffusers folder:

- ``sd_xl_base_1.0.safetensors``: the A1111 full SDXL checkpoint (UNet ``model.diffusion_model.*``, VAE
  ``first_stage_model.*``, CLIP-L ``conditioner.embedders.0.transformer.*``, OpenCLIP bigG
  ``conditioner.embedders.1.model.*``), as A1111 keeps it in ``models/Stable-diffusion/`` and ComfyUI in
  ``models/checkpoints/``;
- ``flux1-dev.safetensors`` / ``flux1-schnell.safetensors``: the BFL transformer alone in its original keys
  (``double_blocks.*``, ``single_blocks.*``; ComfyUI sometimes prefixes them ``model.diffusion_model.``), as
  ComfyUI keeps it in ``models/unet/`` or ``models/diffusion_models/``.

They are looked for in the model root and its ``checkpoints/``, ``unet/``, ``diffusion_models/`` folders (and in
the repo's own folder), first by the profiles' ``single_file`` names, then by the tensor names of the
safetensors **header** (no tensor is read): `recognise`.

Beside a FLUX transformer, ComfyUI keeps the other parts as single files too, found by their headers
(`recognise_part`) in ``clip/`` / ``text_encoders/`` and ``vae/``: ``clip_l.safetensors`` (CLIP-L in the
transformers names, ``text_model.*``), ``t5xxl_fp16.safetensors`` / ``t5xxl_fp8_e4m3fn.safetensors`` (the T5-XXL
encoder in the transformers names, ``encoder.block.*`` + ``shared.weight``; fp8 weights are upcast at load, the
``*_scaled`` fp8 files with per-tensor scales are refused) and ``ae.safetensors`` (BFL's VAE in the original
``encoder.down.*`` / ``decoder.up.*`` names, converted by diffusers). They are used for a part no diffusers folder
provides; the tokenizers are not in them (CLIP's BPE files and T5's tokenizer come from the model root or the
Hugging Face cache).

diffusers' ``from_single_file`` needs the diffusers configs of the model. `config_folder` lays out a small folder
(configs only, no weights) under the temp directory: the configs of the repo folder when one is present
(``hf download REPO --include "*.json" "*.txt"``), else the published configs embedded in
`pipelines.models.published_configs`; the components the file does not hold (FLUX: CLIP-L, T5-XXL, their
tokenizers, the VAE; SDXL: the CLIP tokenizer files) are links to where they were found under the model root or
in the Hugging Face cache (a ComfyUI text-encoder file: ``<part>/config.json`` + a ``model.safetensors`` link to
it; the ComfyUI VAE: ``vae/config.json``, the file is recorded in the marker's ``part_files``, `part_source`). When one is missing, `SingleFileIncompleteError` names it and where to put it.
`locate_model` is `pipelines.models.location.locate` with this fallback for base models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import VitrineError
from pipelines.models import published_configs as pc
from pipelines.models.location import ModelNotFoundError, Located, locate
from pipelines.models.profiles import ModelProfile, get_profile, list_profiles

logger = logging.getLogger(__name__)

#: The ``source`` of a model found as a single file (`Located.source`, `vitrine models`, the manifest).
SINGLE_FILE_SOURCE = "single-file"
#: Where single files are looked for, relative to the model root ("" = the root itself): ComfyUI's folders.
SEARCH_SUBFOLDERS = ("", "checkpoints", "unet", "diffusion_models")
#: The file in a config folder that says which single file it is for.
MARKER = "vitrine-single-file.json"

SDXL_CHECKPOINT = "sdxl-checkpoint"
FLUX_TRANSFORMER = "flux-transformer"
#: kind -> the components a file of that kind holds and the key prefix of each.
PARTS = {
    SDXL_CHECKPOINT: {"unet": "model.diffusion_model.", "vae": "first_stage_model.",
                      "text_encoder": "conditioner.embedders.0.transformer.",
                      "text_encoder_2": "conditioner.embedders.1.model."},
    FLUX_TRANSFORMER: {"transformer": ""},
}
#: ComfyUI's folders of the separate part files (relative to the model root).
PART_SUBFOLDERS = ("clip", "text_encoders", "vae")
CLIP_L_FILE, T5_FILE, BFL_VAE_FILE = "clip-l", "t5-xxl", "bfl-vae"
#: kind of a part file -> the FLUX part it is, and the names ComfyUI's docs give it (preferred when several fit).
PART_FILES = {CLIP_L_FILE: ("text_encoder", ("clip_l.safetensors",)),
              T5_FILE: ("text_encoder_2", ("t5xxl_fp16.safetensors", "t5xxl_fp8_e4m3fn.safetensors")),
              BFL_VAE_FILE: ("vae", ("ae.safetensors", "flux_vae.safetensors"))}
#: Names that are other models of the same architecture: never taken for a base by their header alone.
_NOT_A_BASE = ("kontext", "fill", "canny", "depth", "refiner", "inpaint", "redux", "controlnet", "lora")
_FLUX_SHARED = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae")
_CLIP_BPE = ("vocab.json", "merges.txt")
#: Where CLIP's BPE files (vocab.json + merges.txt, the same for SDXL's two tokenizers and FLUX's CLIP-L) may be.
_CLIP_TOKENIZER_DONORS = (
    ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer"), ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer_2"),
    ("diffusers/stable-diffusion-xl-1.0-inpainting-0.1", "tokenizer"),
    ("stabilityai/stable-diffusion-xl-refiner-1.0", "tokenizer_2"),
    ("black-forest-labs/FLUX.1-dev", "tokenizer"), ("black-forest-labs/FLUX.1-schnell", "tokenizer"),
    ("openai/clip-vit-large-patch14", ""),
)
#: Where T5-XXL's tokenizer may be when no FLUX.1 folder has a ``tokenizer_2``.
_T5_TOKENIZER_DONOR = "google/t5-v1_1-xxl"


class SingleFileIncompleteError(ModelNotFoundError):
    """A single-file checkpoint was found but something it needs beside it was not (the message says what and
    where to put it)."""

    def __init__(self, model_id: str, path: Path, missing: list[str], hint: str):
        self.model_id = model_id
        self.looked = [str(path)]
        self.missing = missing
        VitrineError.__init__(
            self, f"model {model_id!r}: the single-file checkpoint {path} was found, but not "
                  f"{', '.join(missing)} that it needs beside it (it does not contain them). {hint}")


# ------------------------------------------------------------------------------------------- file headers
def read_header(path: str | Path) -> tuple[dict[str, tuple[str, tuple[int, ...]]], bytes] | None:
    """``({tensor name: (dtype, shape)}, raw header bytes)`` of a ``.safetensors`` file, or ``None`` when it
    is not one. Reads the header only."""
    try:
        with Path(path).open("rb") as f:
            head = f.read(8)
            if len(head) != 8:
                return None
            (n,) = struct.unpack("<Q", head)
            if n > 100_000_000:
                return None
            raw = f.read(n)
        header = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    out = {}
    for name, info in header.items():
        if name != "__metadata__" and isinstance(info, dict) and "shape" in info:
            out[name] = (str(info.get("dtype")), tuple(int(s) for s in info["shape"]))
    return out, raw


@dataclass(frozen=True)
class Recognised:
    """What a header says a file is: ``kind`` (`SDXL_CHECKPOINT`, `FLUX_TRANSFORMER`), the denoiser's input
    channels, whether it has FLUX's guidance embedding, and the prefix of the FLUX keys (``""`` or
    ``model.diffusion_model.``)."""

    kind: str
    in_channels: int
    guidance: bool = False
    prefix: str = ""


def recognise(tensors: dict[str, tuple[str, tuple[int, ...]]]) -> Recognised | None:
    """The architecture of a single file from its tensor names (and one shape), or ``None``."""
    names = tensors.keys()
    unet = "model.diffusion_model."
    if (any(n.startswith(unet + "input_blocks.") for n in names)
            and any(n.startswith(PARTS[SDXL_CHECKPOINT]["text_encoder_2"]) for n in names)
            and any(n.startswith(PARTS[SDXL_CHECKPOINT]["text_encoder"]) for n in names)):
        shape = tensors.get(unet + "input_blocks.0.0.weight", ("", (0, 0)))[1]
        return Recognised(SDXL_CHECKPOINT, int(shape[1]) if len(shape) > 1 else 0)
    for prefix in ("", unet):
        if any(n.startswith(prefix + "double_blocks.") for n in names) and \
                any(n.startswith(prefix + "single_blocks.") for n in names):
            shape = tensors.get(prefix + "img_in.weight", ("", (0, 0)))[1]
            return Recognised(FLUX_TRANSFORMER, int(shape[1]) if len(shape) > 1 else 0,
                              guidance=prefix + "guidance_in.in_layer.weight" in tensors, prefix=prefix)
    return None


def recognise_part(tensors: dict[str, tuple[str, tuple[int, ...]]]) -> str | None:
    """What a ComfyUI part file is from its tensor names (as ComfyUI's ``comfy/sd.py`` ``detect_te_model`` tells
    CLIP-G/-H/-L and T5 apart): `CLIP_L_FILE` (``text_model.encoder.layers.*``, fewer than 23 layers), `T5_FILE`
    (gated T5 v1.1 ``encoder.block.*.layer.1.DenseReluDense.wi_1`` + ``shared.weight``), `BFL_VAE_FILE`
    (``encoder.down.*`` + ``decoder.up.*`` without a prefix), or ``None``."""
    names = tensors.keys()
    if "text_model.encoder.layers.0.mlp.fc1.weight" in names:
        return None if "text_model.encoder.layers.22.mlp.fc1.weight" in names else CLIP_L_FILE
    if "encoder.block.0.layer.1.DenseReluDense.wi_1.weight" in names and "shared.weight" in names:
        return T5_FILE
    if "decoder.conv_in.weight" in names and any(n.startswith("encoder.down.0.block.") for n in names) and \
            any(n.startswith("decoder.up.0.block.") for n in names):
        return BFL_VAE_FILE
    return None


@dataclass(frozen=True)
class PartFile:
    """A ComfyUI part file: its ``path``, ``kind`` (`PART_FILES`), the FLUX ``part`` it is, whether its
    weights are fp8 (``F8_*`` in the header) and scaled fp8 (a ``scaled_fp8`` tensor: per-tensor scales)."""

    path: Path
    kind: str
    part: str
    fp8: bool
    scaled: bool
    size: int
    header_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "name": self.path.name, "kind": self.kind, "size": self.size,
                "header_sha256": self.header_sha256, "fp8": self.fp8}


def find_part_files(model_root: str | Path | None) -> dict[str, list[PartFile]]:
    """ComfyUI's separate part files under ``model_root`` (`PART_SUBFOLDERS` and the root itself), by FLUX part:
    ComfyUI's names first, then files that are not fp8, then by name. Reads headers only."""
    out: dict[str, list[PartFile]] = {}
    if model_root is None:
        return out
    for path in _candidates(None, tuple(Path(model_root) / sub for sub in ("", *PART_SUBFOLDERS))):
        got = read_header(path)
        kind = recognise_part(got[0]) if got else None
        if kind is None:
            continue
        tensors = got[0]
        fp8 = any(dt.startswith("F8") for dt, _ in tensors.values())
        part = PART_FILES[kind][0]
        out.setdefault(part, []).append(PartFile(path, kind, part, fp8, "scaled_fp8" in tensors, path.stat().st_size,
                                                 hashlib.sha256(got[1]).hexdigest()))
    for part, files in out.items():
        names = next(v[1] for v in PART_FILES.values() if v[0] == part)
        files.sort(key=lambda f: (f.path.name not in names, f.scaled, f.fp8, f.path.name))
    return out


def _base_for(rec: Recognised) -> str | None:
    """The base model a recognised file is, by architecture: SDXL base, FLUX.1-dev (guidance) or -schnell."""
    if rec.kind == SDXL_CHECKPOINT and rec.in_channels == 4:
        return pc.SDXL_BASE_ID
    if rec.kind == FLUX_TRANSFORMER and rec.in_channels == 64:
        return pc.FLUX_DEV_ID if rec.guidance else pc.FLUX_SCHNELL_ID
    return None


@dataclass(frozen=True)
class SingleFile:
    """A single-file checkpoint found for ``model_id``: its ``path``, ``kind``, how it was matched (``name``:
    the profile's ``single_file`` name; ``header``: by its tensor names), its size and header's sha256."""

    model_id: str
    path: Path
    kind: str
    matched: str
    size: int
    header_sha256: str
    recognised: Recognised = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def parts(self) -> dict[str, str]:
        """The components the file holds -> their key prefix."""
        if self.kind == FLUX_TRANSFORMER:
            return {"transformer": self.recognised.prefix if self.recognised else ""}
        return dict(PARTS[self.kind])

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "name": self.path.name, "kind": self.kind, "matched": self.matched,
                "size": self.size, "header_sha256": self.header_sha256, "parts": self.parts}


_SEEN: dict[tuple[str, int, int], tuple[Recognised | None, str]] = {}


def inspect_file(path: Path) -> tuple[Recognised | None, str]:
    """`recognise` of a file's header and the header's sha256 (cached per path, size and mtime)."""
    try:
        st = path.stat()
    except OSError:
        return None, ""
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SEEN:
        got = read_header(path)
        _SEEN[key] = (recognise(got[0]), hashlib.sha256(got[1]).hexdigest()) if got else (None, "")
    return _SEEN[key]


def _candidates(model_root: str | Path | None, extra: tuple[Path, ...] = ()) -> list[Path]:
    places = list(extra)
    if model_root is not None:
        places += [Path(model_root) / sub for sub in SEARCH_SUBFOLDERS]
    out = []
    for place in places:
        try:
            out += sorted(p for p in place.iterdir() if p.suffix == ".safetensors" and p.is_file())
        except OSError:
            continue
    return list(dict.fromkeys(out))


def _as_single_file(path: Path, model_id: str, matched: str) -> SingleFile | None:
    rec, sha = inspect_file(path)
    if rec is None or _base_for(rec) is None and matched == "header":
        return None
    expected = SDXL_CHECKPOINT if get_profile(model_id).family == "sdxl" else FLUX_TRANSFORMER
    if rec.kind != expected:
        logger.warning("%s is named like %s but its tensors are a %s; ignored", path, model_id, rec.kind)
        return None
    return SingleFile(model_id, path, rec.kind, matched, path.stat().st_size, sha, rec)


def find_single_file(profile: ModelProfile | str, model_root: str | Path | None, *,
                     repo_folder: Path | None = None) -> SingleFile | None:
    """The single-file checkpoint of a base model under ``model_root`` (see the module docstring), or ``None``.

    Args:
        profile (`ModelProfile | str`): a ``base`` profile (others have no single file here).
        model_root (`str | Path`, *optional*): searched with its ComfyUI subfolders (`SEARCH_SUBFOLDERS`).
        repo_folder (`Path`, *optional*): the model's own (incomplete) repo folder, searched first.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    if profile.role != "base" or profile.family not in ("flux", "sdxl"):
        return None
    files = _candidates(model_root, (repo_folder,) if repo_folder is not None else ())
    for path in files:
        if profile.single_file and path.name == profile.single_file:
            sf = _as_single_file(path, profile.id, "name")
            if sf is not None:
                return sf
    known = {p.single_file for p in list_profiles() if p.single_file}
    for path in files:
        if path.name in known or any(w in path.name.lower() for w in _NOT_A_BASE):
            continue
        rec, _ = inspect_file(path)
        if rec is not None and _base_for(rec) == profile.id:
            return _as_single_file(path, profile.id, "header")
    return None


def scan_single_files(model_root: str | Path | None) -> list[SingleFile]:
    """Every base model found as a single file under ``model_root`` (one per model)."""
    out = []
    for p in list_profiles():
        if p.role == "base":
            sf = find_single_file(p, model_root)
            if sf is not None:
                out.append(sf)
    return out


# ------------------------------------------------------------------------------------------ config folders
def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The single-file record of a config folder made by `config_folder`, or ``None`` for any other folder."""
    try:
        return json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def part_source(marker: dict[str, Any], part: str) -> tuple[Path, str] | None:
    """``(file, key prefix)`` of a config folder's component that is loaded from a single file with diffusers'
    converters (the checkpoint's own parts; ComfyUI's VAE file), or ``None`` (a diffusers/transformers folder:
    linked folders, ComfyUI's text-encoder files linked as ``model.safetensors``)."""
    if part in marker.get("parts", {}):
        return Path(marker["path"]), marker["parts"][part]
    pf = marker.get("part_files", {}).get(part)
    if pf is not None and pf.get("kind") == BFL_VAE_FILE:
        return Path(pf["path"]), ""
    return None


def _has_weights(folder: Path) -> bool:
    try:
        return any(p.suffix in (".safetensors", ".gguf") for p in folder.iterdir())
    except OSError:
        return False


def _usable_part(folder: Path, part: str) -> bool:
    if part.startswith("tokenizer"):
        return folder.is_dir() and any(folder.iterdir())
    return (folder / "config.json").is_file() and _has_weights(folder)


def _donor_part(part: str, ids: list[str], model_root) -> Path | None:
    """The first folder ``<repo>/<part>`` found (model root, then HF cache) among ``ids`` that is usable."""
    for mid in ids:
        try:
            loc = locate(mid, model_root, required_files=(part,))
        except (ModelNotFoundError, ValueError):
            continue
        if _usable_part(loc.path / part, part):
            return loc.path / part
    return None


def _clip_bpe(model_root) -> Path | None:
    """A folder holding CLIP's vocab.json + merges.txt (see `_CLIP_TOKENIZER_DONORS`)."""
    for mid, sub in _CLIP_TOKENIZER_DONORS:
        need = tuple(f"{sub}/{f}" if sub else f for f in _CLIP_BPE)
        try:
            loc = locate(mid, model_root, required_files=need)
        except (ModelNotFoundError, ValueError):
            continue
        return loc.path / sub if sub else loc.path
    return None


def _hint(sf: SingleFile, missing: list[str] | None = None) -> str:
    mid = sf.model_id
    tokenizers = (f"hf download {mid} --include 'tokenizer*/*' --local-dir MODEL_ROOT/{mid} (a few MB, no weights; or "
                  f"CLIP's vocab.json + merges.txt of openai/clip-vit-large-patch14 and {_T5_TOKENIZER_DONOR}'s "
                  "tokenizer under MODEL_ROOT/<org>/<name>/ or in the Hugging Face cache)")
    if sf.kind == FLUX_TRANSFORMER and missing and all("tokenizer" in m for m in missing):
        return f"The tokenizers are in no single file: {tokenizers}."
    if sf.kind == FLUX_TRANSFORMER:
        return (f"Either put them at MODEL_ROOT/{mid}/ (hf download {mid} --include 'model_index.json' "
                f"'text_encoder*/*' 'tokenizer*/*' 'vae/*' 'scheduler/*' --local-dir MODEL_ROOT/{mid}: the diffusers "
                "folder without the transformer, ~10 GB), or keep any complete FLUX.1 diffusers folder (dev, schnell, "
                "Fill, Kontext: they share these) under MODEL_ROOT/<org>/<name>/; or, in ComfyUI's layout, "
                "MODEL_ROOT/clip/clip_l.safetensors, MODEL_ROOT/clip/t5xxl_fp16.safetensors (or "
                "t5xxl_fp8_e4m3fn.safetensors) and MODEL_ROOT/vae/ae.safetensors, plus the tokenizers, which those "
                f"files do not hold: {tokenizers}.")
    return (f"Put CLIP's tokenizer files (vocab.json, merges.txt) at MODEL_ROOT/{mid}/tokenizer/ and tokenizer_2/ "
            f"(hf download {mid} --include '*.json' '*.txt' --local-dir MODEL_ROOT/{mid}: a few MB, no weights), "
            "or have openai/clip-vit-large-patch14 in the Hugging Face cache.")


def _check_published_shape(sf: SingleFile) -> None:
    """The published configs fit only the published architecture: check the denoiser's first layer."""
    rec = sf.recognised
    got = read_header(sf.path)
    tensors = got[0] if got else {}
    if sf.kind == SDXL_CHECKPOINT:
        key, want = "model.diffusion_model.input_blocks.0.0.weight", (pc.SDXL_UNET["block_out_channels"][0], 4, 3, 3)
    else:
        key = (rec.prefix if rec else "") + "img_in.weight"
        want = (pc.FLUX_DEV_TRANSFORMER["num_attention_heads"] * pc.FLUX_DEV_TRANSFORMER["attention_head_dim"], 64)
    shape = tensors.get(key, ("", ()))[1]
    if tuple(shape) != want:
        raise SingleFileIncompleteError(
            sf.model_id, sf.path, [f"its diffusers configs ({key} is {list(shape)}, the published model's is "
                                   f"{list(want)}: not the published architecture)"],
            f"Put the model's diffusers configs (model_index.json, */config.json) at MODEL_ROOT/{sf.model_id}/.")


#: part -> the published config of a FLUX.1 part a ComfyUI file may provide.
_PART_CONFIGS = {"text_encoder": pc.CLIP_L, "text_encoder_2": pc.T5_XXL, "vae": pc.FLUX_VAE}


def _layers(tensors, prefix: str) -> int:
    """How many ``prefix<N>.`` blocks the tensor names hold (0 when none)."""
    ids = {n[len(prefix):].split(".", 1)[0] for n in tensors if n.startswith(prefix)}
    return 1 + max((int(i) for i in ids if i.isdigit()), default=-1)


def part_file_mismatch(pf: PartFile, config: dict[str, Any]) -> str | None:
    """Why a ComfyUI part file does not fit ``config`` (widths, depth, vocabulary, from its header), or ``None``."""
    got = read_header(pf.path)
    t = got[0] if got else {}

    def shape(name):
        return list(t.get(name, ("", ()))[1])

    if pf.kind == CLIP_L_FILE:
        checks = [("text_model.embeddings.token_embedding.weight", shape("text_model.embeddings.token_embedding.weight"),
                   [config["vocab_size"], config["hidden_size"]]),
                  ("layers", _layers(t, "text_model.encoder.layers."), config["num_hidden_layers"]),
                  ("mlp.fc1", shape("text_model.encoder.layers.0.mlp.fc1.weight"),
                   [config["intermediate_size"], config["hidden_size"]])]
    elif pf.kind == T5_FILE:
        checks = [("shared.weight", shape("shared.weight"), [config["vocab_size"], config["d_model"]]),
                  ("blocks", _layers(t, "encoder.block."), config["num_layers"]),
                  ("DenseReluDense.wi_0", shape("encoder.block.0.layer.1.DenseReluDense.wi_0.weight"),
                   [config["d_ff"], config["d_model"]])]
    else:
        blocks = config["block_out_channels"]
        checks = [("decoder.conv_in.weight", shape("decoder.conv_in.weight"),
                   [blocks[-1], config["latent_channels"], 3, 3]),
                  ("encoder.conv_in.weight", shape("encoder.conv_in.weight"), [blocks[0], config["in_channels"], 3, 3]),
                  ("encoder levels", _layers(t, "encoder.down."), len(blocks)),
                  ("resnets per level", _layers(t, "encoder.down.0.block."), config["layers_per_block"])]
    bad = [f"{what} is {got_} where the config has {want}" for what, got_, want in checks if got_ != want]
    return "; ".join(bad) or None


def _clip_tokenizer_files(part: str, model_root, tokenizer_config: dict) -> tuple[dict, dict] | None:
    """A CLIP tokenizer folder from CLIP's BPE files (`_clip_bpe`) + ``tokenizer_config``: ``(files, links)``."""
    bpe = _clip_bpe(model_root)
    if bpe is None:
        return None
    return {f"{part}/tokenizer_config.json": tokenizer_config}, {f"{part}/{f}": bpe / f for f in _CLIP_BPE}


def _t5_tokenizer(model_root) -> Path | None:
    """``google/t5-v1_1-xxl`` (its tokenizer.json or spiece.model) under the model root or in the HF cache."""
    for need in (("tokenizer.json",), ("spiece.model",)):
        try:
            return locate(_T5_TOKENIZER_DONOR, model_root, required_files=need).path
        except (ModelNotFoundError, ValueError):
            continue
    return None


@dataclass
class _Plan:
    """What a config folder holds: files to write ``{relpath: json}``, links ``{relpath: source}``, the
    ComfyUI part files used ``{part: PartFile}``, and what is missing."""

    files: dict[str, Any] = field(default_factory=dict)
    links: dict[str, Path] = field(default_factory=dict)
    part_files: dict[str, PartFile] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


_FLUX_PART_NAMES = {"text_encoder": "CLIP-L (text_encoder)", "text_encoder_2": "T5-XXL (text_encoder_2)",
                    "vae": "the VAE (vae)", "tokenizer": "the CLIP tokenizer (tokenizer: vocab.json, merges.txt)",
                    "tokenizer_2": "the T5 tokenizer (tokenizer_2)"}


def _flux_part(plan: _Plan, part: str, own: Path | None, donors: list[str], model_root,
               part_files: dict[str, list[PartFile]]) -> None:
    """One FLUX part the transformer file lacks: a FLUX.1 diffusers folder's, else ComfyUI's file (text encoders,
    VAE) or CLIP's BPE files / T5-XXL's tokenizer (tokenizers), else recorded as missing."""
    src = own if own is not None and _usable_part(own, part) else _donor_part(part, donors, model_root)
    if src is not None:
        plan.links[part] = src
        return
    if part == "tokenizer":
        cfg = own / "tokenizer_config.json" if own is not None else None
        got = _clip_tokenizer_files(part, model_root, json.loads(cfg.read_text(encoding="utf-8"))
                                    if cfg is not None and cfg.is_file() else pc.FLUX_CLIP_TOKENIZER_CONFIG)
        if got is not None:
            plan.files.update(got[0])
            plan.links.update(got[1])
            return
    elif part == "tokenizer_2":
        t5 = _t5_tokenizer(model_root)
        if t5 is not None:
            plan.links[part] = t5
            return
    elif part in _PART_CONFIGS:
        usable = [f for f in part_files.get(part, []) if not f.scaled]
        if usable:
            pf = usable[0]
            own_cfg = own / "config.json" if own is not None else None
            config = json.loads(own_cfg.read_text(encoding="utf-8")) if own_cfg is not None and own_cfg.is_file() \
                else _PART_CONFIGS[part]
            why = part_file_mismatch(pf, config)
            if why is not None:
                plan.missing.append(f"a config for {pf.path} ({why}: not the published {_FLUX_PART_NAMES[part]}; put "
                                    f"the model's {part}/config.json in its diffusers folder)")
                return
            plan.files[f"{part}/config.json"] = config
            if part != "vae":  # transformers reads the ComfyUI file as it is (the transformers names)
                plan.links[f"{part}/model.safetensors"] = pf.path
            plan.part_files[part] = pf
            return
        scaled = part_files.get(part, [])
        if scaled:
            plan.missing.append(f"{_FLUX_PART_NAMES[part]} in a loadable form ({scaled[0].path.name} is scaled fp8, "
                                "weights with per-tensor scales that transformers cannot load; use "
                                "t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors)")
            return
    plan.missing.append(_FLUX_PART_NAMES.get(part, part))


def _plan_folder(sf: SingleFile, model_root, repo_folder: Path | None) -> tuple[_Plan, str]:
    """What a config folder holds (`_Plan`) and where its configs come from (the repo folder or ``published``).

    Raises:
        `SingleFileIncompleteError`: something the file needs beside it is missing.
    """
    published = pc.BASE_CONFIGS[sf.model_id]
    has_repo = repo_folder is not None and (repo_folder / "model_index.json").is_file()
    index = json.loads((repo_folder / "model_index.json").read_text(encoding="utf-8")) if has_repo else \
        published["model_index.json"]
    if not has_repo:
        _check_published_shape(sf)
    plan = _Plan(files={"model_index.json": index})
    others = [p.id for p in list_profiles("flux") if p.id != sf.model_id and set(_FLUX_SHARED) <= set(p.shares or ())]
    flux_donors = [sf.model_id, *(pc.FLUX_SCHNELL_ID, pc.FLUX_DEV_ID), *others]
    part_files = find_part_files(model_root) if sf.kind == FLUX_TRANSFORMER else {}
    for part, entry in index.items():
        if part.startswith("_") or not isinstance(entry, (list, tuple)) or not entry or entry[0] is None:
            continue
        own = repo_folder / part if has_repo else None
        if part in sf.parts or part == "scheduler":  # configs only
            cfg = "scheduler_config.json" if part == "scheduler" else "config.json"
            if own is not None and (own / cfg).is_file():
                plan.files[f"{part}/{cfg}"] = json.loads((own / cfg).read_text(encoding="utf-8"))
            else:
                plan.files[f"{part}/{cfg}"] = published[f"{part}/{cfg}"]
        elif sf.kind == SDXL_CHECKPOINT:  # the CLIP tokenizers: our tokenizer config + CLIP's BPE files
            if own is not None and (all((own / f).is_file() for f in _CLIP_BPE) or (own / "tokenizer.json").is_file()):
                plan.links[part] = own
                continue
            got = _clip_tokenizer_files(part, model_root, published[f"{part}/tokenizer_config.json"])
            if got is None:
                plan.missing.append(f"the CLIP tokenizer files for {part} (vocab.json, merges.txt)")
                continue
            plan.files.update(got[0])
            plan.links.update(got[1])
        else:  # FLUX: text encoders, tokenizers and VAE from a FLUX.1 diffusers folder or ComfyUI's files
            _flux_part(plan, part, own, flux_donors, model_root, part_files)
    if plan.missing:
        raise SingleFileIncompleteError(sf.model_id, sf.path, plan.missing, _hint(sf, plan.missing))
    return plan, (str(repo_folder) if has_repo else "published")


def default_cache_root() -> Path:
    """Where config folders are written: ``<temp dir>/vitrine-<uid>/single-file`` (configs only, a few KB)."""
    uid = getattr(os, "getuid", lambda: 0)()
    return Path(tempfile.gettempdir()) / f"vitrine-{uid}" / "single-file"


def config_folder(sf: SingleFile, model_root: str | Path | None, *, repo_folder: Path | None = None,
                  cache_root: Path | None = None) -> Path:
    """A diffusers folder for a single file: configs (written), links to the components found elsewhere, and
    `MARKER` (the file, its header sha256, where each component comes from). Reused while nothing changes.

    Raises:
        `SingleFileIncompleteError`: a component the file does not hold is not found (named, with where to put it).
    """
    plan, configs = _plan_folder(sf, model_root, repo_folder)
    files, links = plan.files, plan.links
    components = {**{k: str(v) for k, v in links.items()},
                  **{part: str(pf.path) for part, pf in plan.part_files.items() if part == "vae"}}
    marker = {"model_id": sf.model_id, **sf.to_json(), "configs": configs,
              "components": dict(sorted(components.items())),
              "part_files": {part: pf.to_json() for part, pf in sorted(plan.part_files.items())}}
    blob = json.dumps({"marker": marker, "files": files}, sort_keys=True)
    root = cache_root or default_cache_root()
    folder = root / hashlib.sha256(blob.encode()).hexdigest()[:20]
    if (folder / MARKER).is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".building-"))
    for rel, data in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    for rel, src in links.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).symlink_to(Path(src).resolve())
    (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    try:
        tmp.rename(folder)
    except OSError:  # another process made it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _denoiser_weights(folder: Path) -> bool:
    return any(_has_weights(folder / part) for part in ("transformer", "unet"))


def locate_model(profile: ModelProfile, model_root: str | Path | None, *, cache_root: Path | None = None) -> Located:
    """`locate` a profile's folder; for a base model whose diffusers folder is missing or has no denoiser weights,
    its single file (`find_single_file`) with a `config_folder` (source ``single-file``).

    Raises:
        `ModelNotFoundError`: nothing found; `SingleFileIncompleteError`: a single file without what it needs.
    """
    try:
        loc = locate(profile.id, model_root, required_files=profile.required_files, revision=profile.revision)
    except ModelNotFoundError:
        if profile.role != "base":
            raise
        sf = find_single_file(profile, model_root)
        if sf is None:
            raise
        return Located(profile.id, config_folder(sf, model_root, cache_root=cache_root), SINGLE_FILE_SOURCE)
    if profile.role != "base" or _denoiser_weights(loc.path):
        return loc
    sf = find_single_file(profile, model_root, repo_folder=loc.path)
    if sf is None:
        return loc
    return Located(profile.id, config_folder(sf, model_root, repo_folder=loc.path, cache_root=cache_root),
                   SINGLE_FILE_SOURCE)


def find_model(profile: ModelProfile, model_root: str | Path | None) -> Located | None:
    """`locate_model`, ``None`` when not found (an incomplete single file counts as not found)."""
    try:
        return locate_model(profile, model_root)
    except ModelNotFoundError:
        return None
