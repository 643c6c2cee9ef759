"""Finding and loading the grounded-sam models, once per process.

Models are named by Hugging Face repo id (see `pipelines.models.segmentation_models`) and found offline by
`pipelines.models.location` (``--model-root DIR/<org>/<name>/``, then the Hugging Face cache). Finding is
cheap (file checks, no torch); loading happens on first use and is cached per process, keyed by model id,
file, revision, folder, dtype and device.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import InputError, MissingBackendError
from pipelines.models import segmentation_models as sm
from pipelines.models.location import Located, find
from pipelines.models.registry import get as get_spec
from pipelines.segmentation.grounded_sam.backends import TransformersGroundingDino, TransformersSamPredictor
from pipelines.segmentation.grounded_sam.original import (
    OriginalGroundingDinoDetector,
    OriginalSamPredictor,
    load_original_grounding_dino,
    load_original_sam,
)
from pipelines.segmentation.grounded_sam.quiet import quiet_loading

logger = logging.getLogger(__name__)

BACKEND_TRANSFORMERS = "transformers"
BACKEND_SEGMENT_ANYTHING = "segment_anything"
BACKEND_GROUNDINGDINO = "groundingdino-py"
_BACKEND_BY_FAMILY = {
    sm.GROUNDING_DINO: BACKEND_TRANSFORMERS,
    sm.SAM: BACKEND_TRANSFORMERS,
    sm.SAM_HQ: BACKEND_TRANSFORMERS,
    sm.SAM2: BACKEND_TRANSFORMERS,
    sm.SAM_ORIGINAL: BACKEND_SEGMENT_ANYTHING,
    sm.GROUNDING_DINO_ORIGINAL: BACKEND_GROUNDINGDINO,
    sm.TEXT_ENCODER: BACKEND_TRANSFORMERS,
}


@dataclass(frozen=True)
class ModelRecord:
    """A found model, as the manifest records it.

    Attributes:
        id (`str`): Hugging Face repo id (or the file name of a ``.pth`` given by path).
        family (`str`): ``grounding-dino``, ``sam``, ``sam-hq``, ``sam2``, ``sam-original``, ...
        role (`str`): ``detector``, ``mask`` or ``text-encoder``.
        backend (`str`): ``transformers``, ``segment_anything`` or ``groundingdino-py``.
        licence (`str`): as published with the weights.
        commercial (`bool`): whether the licence allows commercial use.
        revision (`str`, *optional*): the snapshot's commit when known (Hugging Face cache folder name, or
            the ``.cache/huggingface/download/*.metadata`` that ``hf download --local-dir`` writes).
        source (`str`): ``model-root``, ``hf-cache`` or ``file``.
        path (`str`): the folder (or file) found.
        file (`str`, *optional*): the weights file inside ``path`` for original-format checkpoints.
        config (`str`, *optional*): the groundingdino-py config inside ``path``.
        text_encoder (`str`, *optional*): the BERT folder for groundingdino-py.
    """

    id: str
    family: str
    role: str
    backend: str
    licence: str
    commercial: bool
    revision: str | None
    source: str
    path: str
    file: str | None = None
    config: str | None = None
    text_encoder: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The manifest entry: id, revision, licence and how it was found (paths stay out: they vary)."""
        d = asdict(self)
        d.pop("path")
        d.pop("text_encoder")
        return {k: v for k, v in d.items() if v is not None or k == "revision"}

    @property
    def label(self) -> str:
        """``id`` plus ``@revision`` (short) and the file for original checkpoints, for logs and descriptions."""
        s = self.id + (f"/{self.file}" if self.file else "")
        return s + (f"@{self.revision[:12]}" if self.revision else "")


def snapshot_revision(located: Located) -> str | None:
    """The commit a snapshot folder holds, when it can be told without network access."""
    path = Path(located.path)
    if located.source == "hf-cache" and path.parent.name == "snapshots":
        return path.name
    meta_dir = path / ".cache" / "huggingface" / "download"
    for name in ("config.json.metadata", "model.safetensors.metadata"):
        meta = meta_dir / name
        if meta.is_file():
            first = meta.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
            if first and len(first[0].strip()) == 40:
                return first[0].strip()
    for meta in sorted(meta_dir.rglob("*.metadata")) if meta_dir.is_dir() else []:
        first = meta.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
        if first and len(first[0].strip()) == 40:
            return first[0].strip()
    return None


def _record(model_id: str, role: str, located: Located, **extra) -> ModelRecord:
    spec = get_spec(model_id)
    if spec is None:  # callers pass registered ids
        raise InputError(f"{model_id!r} is not a registered model")
    return ModelRecord(id=model_id, family=spec.family, role=role, backend=_BACKEND_BY_FAMILY[spec.family],
                       licence=spec.licence, commercial=spec.commercial, revision=spec.revision or
                       snapshot_revision(located), source=located.source, path=str(located.path), **extra)


def _find_detector(model_id: str, model_root) -> tuple[ModelRecord | None, str]:
    """A record for ``model_id`` if it is complete under ``model_root`` / the HF cache, else why not."""
    spec = get_spec(model_id)
    if spec is None or spec.family not in sm.DETECTOR_FAMILIES:
        known = ", ".join(sm.DETECTOR_PREFERENCE)
        return None, f"{model_id!r} is not a known GroundingDINO model (known: {known})"
    loc = find(model_id, model_root)
    if loc is None:
        return None, f"{model_id} not found"
    if spec.family == sm.GROUNDING_DINO:
        return _record(model_id, "detector", loc), ""
    for ck in sm.GROUNDING_DINO_ORIGINAL_CHECKPOINTS:
        if (loc.path / ck.weights).is_file() and (loc.path / ck.config).is_file():
            bert = find(sm.BERT_BASE_UNCASED, model_root)
            if bert is None:
                return None, (f"{model_id} found but its text encoder {sm.BERT_BASE_UNCASED} is not "
                              f"(put it at MODEL_ROOT/{sm.BERT_BASE_UNCASED})")
            return _record(model_id, "detector", loc, file=ck.weights, config=ck.config,
                           text_encoder=str(bert.path)), ""
    names = ", ".join(f"{c.weights} + {c.config}" for c in sm.GROUNDING_DINO_ORIGINAL_CHECKPOINTS)
    return None, f"{model_id} found at {loc.path} but it holds none of {names}"


def _find_mask_model(model_id: str, model_root) -> tuple[ModelRecord | None, str]:
    path = Path(model_id)
    if model_id.endswith(".pth"):
        if not path.is_file():
            return None, f"{model_id}: no such checkpoint file"
        spec = get_spec(sm.SAM_ORIGINAL_REPO)
        return ModelRecord(id=path.name, family=sm.SAM_ORIGINAL, role="mask", backend=BACKEND_SEGMENT_ANYTHING,
                           licence=spec.licence if spec else "Apache-2.0", commercial=True, revision=None,
                           source="file", path=str(path.parent.resolve()), file=path.name), ""
    spec = get_spec(model_id)
    if spec is None or spec.family not in sm.MASK_FAMILIES:
        known = ", ".join(sm.MASK_PREFERENCE)
        return None, f"{model_id!r} is not a known Segment Anything model (known: {known}, or a .pth file)"
    loc = find(model_id, model_root)
    if loc is None:
        return None, f"{model_id} not found"
    if spec.family != sm.SAM_ORIGINAL:
        return _record(model_id, "mask", loc), ""
    for ck in sm.SAM_ORIGINAL_CHECKPOINTS:
        if (loc.path / ck.weights).is_file():
            return _record(model_id, "mask", loc, file=ck.weights), ""
    names = ", ".join(c.weights for c in sm.SAM_ORIGINAL_CHECKPOINTS)
    return None, f"{model_id} found at {loc.path} but it holds none of {names}"


#: transformers SAM repo -> the original checkpoint variant with the same weights (published by Meta).
SAM_ORIGINAL_EQUIVALENT = {"facebook/sam-vit-huge": "vit_h", "facebook/sam-vit-large": "vit_l",
                           "facebook/sam-vit-base": "vit_b"}


def _faster_on_cpu(rec: ModelRecord, model_root) -> ModelRecord:
    """On a CPU, the original ``segment_anything`` checkpoint of the same ViT when it is there, else ``rec``.

    The same weights in ``segment_anything`` embed an image faster on a CPU than transformers' ``SamModel``
    (bench/sam_backends.py: 1.33x with SDPA, 1.48x eager, on 2 cores); on a GPU transformers stays preferred.
    """
    variant = SAM_ORIGINAL_EQUIVALENT.get(rec.id)
    if variant is None:
        return rec
    loc = find(sm.SAM_ORIGINAL_REPO, model_root)
    ck = next((c for c in sm.SAM_ORIGINAL_CHECKPOINTS if c.variant == variant), None)
    if loc is None or ck is None or not (loc.path / ck.weights).is_file():
        return rec
    try:
        import segment_anything  # noqa: F401
    except ImportError:
        return rec
    logger.info("on a CPU: %s from its segment_anything checkpoint %s (faster there)", rec.id, ck.weights)
    return _record(sm.SAM_ORIGINAL_REPO, "mask", loc, file=ck.weights)


def resolve_models(model_root: str | Path | None = None, detector: str | None = None,
                   sam: str | None = None, *, device: str | None = None) -> tuple[ModelRecord, ModelRecord]:
    """Find the detector and the mask model to use (no loading).

    Args:
        model_root (`str | Path`, *optional*): searched first as ``DIR/<org>/<name>/``; then the HF cache.
        detector (`str`, *optional*): a GroundingDINO repo id; defaults to the first found of
            `DETECTOR_PREFERENCE` (base, tiny, then the original-format checkpoints).
        sam (`str`, *optional*): a Segment Anything repo id or a ``sam_vit_*.pth`` file; defaults to the
            first found of `MASK_PREFERENCE` (ViT-H, -L, -B, SAM-HQ, SAM 2.1, then original checkpoints).
        device (`str`, *optional*): where the models will run. ``cpu``: an automatically chosen transformers
            SAM is replaced by the original ``segment_anything`` checkpoint of the same ViT when that is found
            (`_faster_on_cpu`); ``None`` (file checks only, e.g. `probe`) or a GPU: no change.

    Raises:
        `InputError`: a model was not found; the message lists what was looked for and where.
    """
    where = f"under {model_root} or the Hugging Face cache" if model_root else "in the Hugging Face cache (no --model-root)"
    found: list[ModelRecord] = []
    for role, requested, preference, finder in (
        ("detector", detector, sm.DETECTOR_PREFERENCE, _find_detector),
        ("mask", sam, sm.MASK_PREFERENCE, _find_mask_model),
    ):
        if requested:
            rec, why = finder(requested, model_root)
            if rec is None:
                raise InputError(f"{why} {where}", key=role)
            found.append(rec)
            continue
        reasons = []
        for model_id in preference:
            rec, why = finder(model_id, model_root)
            if rec is not None:
                if role == "mask" and device == "cpu":
                    rec = _faster_on_cpu(rec, model_root)
                found.append(rec)
                break
            reasons.append(why)
        else:
            what = "GroundingDINO" if role == "detector" else "Segment Anything"
            raise InputError(f"no {what} model found {where}: " + "; ".join(reasons) +
                             ". Fetch one with e.g. `hf download " + preference[0] +
                             " --local-dir MODEL_ROOT/" + preference[0] + "`", key=role)
    return found[0], found[1]


def probe(model_root: str | Path | None = None) -> tuple[bool, str]:
    """Cheap check (files only) that a detector and a mask model are there: ``(available, reason)``."""
    try:
        det, mask = resolve_models(model_root)
    except InputError as exc:
        return False, exc.message
    return True, f"found {det.id} ({det.source}) and {mask.label} ({mask.source})"


# --------------------------------------------------------------------------------------------------
# Loading (cached)
# --------------------------------------------------------------------------------------------------

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()
#: How many times each model was actually loaded in this process (tests check "once").
LOAD_COUNTS: dict[tuple, int] = {}


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype(name: str | None):
    import torch

    table = {None: torch.float32, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise InputError(f"unknown dtype {name!r}; expected float32, float16 or bfloat16", key="dtype")
    return table[name]


def cache_key(record: ModelRecord, device: str, dtype: str | None) -> tuple:
    """The model cache key: model id, file, revision, folder, dtype and device."""
    return (record.role, record.id, record.file, record.revision, record.path, dtype or "float32", device)


def clear_model_cache() -> None:
    """Forget every loaded model (tests; freeing GPU memory)."""
    with _LOCK:
        _CACHE.clear()


def _cached(key: tuple, build):
    with _LOCK:
        if key not in _CACHE:
            logger.info("loading %s %s on %s (%s)", key[0], key[1], key[6], key[5])
            with quiet_loading():
                _CACHE[key] = build()
            LOAD_COUNTS[key] = LOAD_COUNTS.get(key, 0) + 1
        return _CACHE[key]


def _float32_only(record: ModelRecord, dtype: str | None) -> None:
    if dtype not in (None, "float32"):
        raise InputError(f"{record.id} ({record.backend}) runs in float32 only; dtype={dtype!r} is for the "
                         "transformers backends", key="dtype")


def _check_weights(folder: Path, model_id: str) -> None:
    if not any((folder / f).is_file() for f in ("model.safetensors", "model.safetensors.index.json",
                                                  "pytorch_model.bin", "pytorch_model.bin.index.json")):
        raise InputError(f"{model_id}: no weights (model.safetensors or pytorch_model.bin) in the snapshot", folder)


def load_detector(record: ModelRecord, *, device: str | None = None, dtype: str | None = None,
                  original_shorter_side: int | None = None):
    """The detector for ``record`` (loaded once per process).

    Returns:
        An object with ``detect(image, phrases) -> DetectorOutput``.
    """
    device = device or default_device()
    key = cache_key(record, device, dtype) + (original_shorter_side,)

    def build():
        torch_dtype = _dtype(dtype)
        if record.backend == BACKEND_GROUNDINGDINO:
            _float32_only(record, dtype)
            folder = Path(record.path)
            model = load_original_grounding_dino(folder / record.config, folder / record.file,
                                                 text_encoder=record.text_encoder)
            kwargs = {"shorter_side": original_shorter_side} if original_shorter_side else {}
            return OriginalGroundingDinoDetector(model, device, **kwargs)
        _check_weights(Path(record.path), record.id)
        return TransformersGroundingDino.from_pretrained(record.path, device=device, dtype=torch_dtype)

    return _cached(key, build)


def load_mask_predictor(record: ModelRecord, *, device: str | None = None, dtype: str | None = None):
    """The mask model for ``record`` (loaded once per process).

    Returns:
        An object with ``set_image``, ``predict_low_res`` and ``upscale`` (see `pipelines.segmentation.grounded_sam.pipeline`).
    """
    device = device or default_device()
    key = cache_key(record, device, dtype)

    def build():
        torch_dtype = _dtype(dtype)
        if record.backend == BACKEND_SEGMENT_ANYTHING:
            _float32_only(record, dtype)
            model, _arch = load_original_sam(Path(record.path) / record.file)
            return OriginalSamPredictor(model, device)
        _check_weights(Path(record.path), record.id)
        return TransformersSamPredictor.from_pretrained(record.path, device=device, dtype=torch_dtype)

    return _cached(key, build)


def require_backend(record: ModelRecord) -> None:
    """Raise `MissingBackendError` when the package ``record`` needs is not importable."""
    import importlib.util

    module = {BACKEND_SEGMENT_ANYTHING: "segment_anything", BACKEND_GROUNDINGDINO: "groundingdino",
              BACKEND_TRANSFORMERS: "transformers"}[record.backend]
    if importlib.util.find_spec(module) is None:
        hint = {"segment_anything": "pip install segment-anything==1.0 torchvision",
                "groundingdino": "pip install groundingdino-py==0.4.0 torchvision",
                "transformers": "pip install 'transformers>=5.20'"}[module]
        raise MissingBackendError(record.backend, hint)
