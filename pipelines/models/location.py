"""Finding model weights offline-first: ``--model-root DIR`` laid out as ``DIR/<org>/<name>/`` (a plain
snapshot of the Hugging Face repo), then the Hugging Face cache. Nothing is downloaded here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import InputError, VitrineError
from pipelines.models import known
from pipelines.models.profile_spec import ModelProfile, gguf_pattern

logger = logging.getLogger(__name__)

#: Environment variable the CLI and flows read the model root from (`pipelines.settings`; ``--model-root`` wins).
MODEL_ROOT_ENV = "VITRINE_MODEL_ROOT"


class ModelNotFoundError(VitrineError, FileNotFoundError):
    """A model's weights were not found. The message lists where we looked and how to fetch them."""

    def __init__(self, model_id: str, looked: list[str], required: tuple[str, ...]):
        self.model_id = model_id
        self.looked = looked
        places = "\n".join(f"  - {p}" for p in looked) or "  (nowhere: no model root and no Hugging Face cache)"
        super().__init__(
            f"model {model_id!r} not found (a complete snapshot has {', '.join(required)}). Looked in:\n{places}\n"
            f"To fetch it on a machine with internet access:\n"
            f"  hf download {model_id} --local-dir MODEL_ROOT/{model_id}\n"
            f"then pass --model-root MODEL_ROOT (or set {MODEL_ROOT_ENV})."
        )


@dataclass(frozen=True)
class Located:
    """Where a model was found: ``path`` (a folder) and ``source`` (``model-root`` or ``hf-cache``)."""

    model_id: str
    path: Path
    source: str


def _complete(folder: Path, required: tuple[str, ...]) -> bool:
    """Every required file exists; an entry with ``*`` is a glob that must match at least one file."""
    return folder.is_dir() and all(any(folder.glob(f)) if "*" in f else (folder / f).exists() for f in required)


def _hf_cache_snapshot(model_id: str, required: tuple[str, ...], revision: str | None) -> tuple[Path | None, str]:
    """The cached snapshot folder of ``model_id`` in the Hugging Face cache, without network access."""
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError:  # pragma: no cover - huggingface_hub is a core dependency
        return None, "Hugging Face cache (huggingface_hub not installed)"
    cache = Path(constants.HF_HUB_CACHE)
    where = f"Hugging Face cache {cache}"
    try:
        path = Path(snapshot_download(model_id, revision=revision, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError and friends)
        return None, where
    return (path if _complete(path, required) else None), where


def locate(
    model_id: str,
    model_root: str | Path | None = None,
    *,
    required_files: tuple[str, ...] | None = None,
    revision: str | None = None,
    use_hf_cache: bool = True,
) -> Located:
    """Find a model's snapshot folder, offline.

    Args:
        model_id (`str`): ``org/name`` as on the Hugging Face Hub, e.g. ``facebook/sam-vit-huge``.
        model_root (`str | Path`, *optional*): searched first, as ``<model_root>/<org>/<name>/``
            (the CLI and flows pass `VitrineSettings.model_root`: ``--model-root`` or ``$VITRINE_MODEL_ROOT``).
        required_files (`tuple[str, ...]`, *optional*): files a complete snapshot has; defaults to the
            registry's entry, else ``("config.json",)``. Pass ``()`` to accept any existing folder.
        revision (`str`, *optional*): revision to look for in the Hugging Face cache.
        use_hf_cache (`bool`, *optional*, defaults to `True`): also look in the Hugging Face cache.

    Returns:
        `Located`.

    Raises:
        `ModelNotFoundError`: listing every place looked at and the command that fetches the model.
    """
    if model_id.count("/") != 1:
        raise ValueError(f"model id must look like 'org/name', got {model_id!r}")
    spec = known.get(model_id)
    if required_files is None:
        required_files = spec.required_files if spec else ("config.json",)
    if revision is None and spec is not None:
        revision = spec.revision
    root = Path(model_root) if model_root is not None else None
    looked: list[str] = []
    if root is not None:
        folder = root / model_id
        looked.append(str(folder))
        if _complete(folder, required_files):
            return Located(model_id, folder, "model-root")
    if use_hf_cache:
        path, where = _hf_cache_snapshot(model_id, required_files, revision)
        looked.append(where)
        if path is not None:
            return Located(model_id, path, "hf-cache")
    raise ModelNotFoundError(model_id, looked, required_files)


def find(model_id: str, model_root: str | Path | None = None, **kwargs) -> Located | None:
    """Like `locate`, but ``None`` when the model is not found."""
    try:
        return locate(model_id, model_root, **kwargs)
    except ModelNotFoundError:
        return None


def gguf_weight_file(profile: ModelProfile, folder: Path, wanted: str | None = None) -> Path:
    """The ``.gguf`` file of a GGUF profile's folder to load.

    Args:
        profile (`ModelProfile`): a ``gguf`` profile (``weight_name`` e.g. ``flux1-dev-Q8_0.gguf``).
        folder (`Path`): its located folder.
        wanted (`str`, *optional*): a file name the user chose (``VITRINE_GEN_GGUF_FILE``).

    Returns:
        `Path`: ``wanted`` when given; else the profile's ``weight_name`` when present; else the only file
        matching `gguf_pattern` (``flux1-dev-*.gguf``: city96 publishes Q2_K ... Q8_0, F16, BF16).

    Raises:
        `InputError`: ``wanted`` is not there, or several files match and none was chosen (both list the
        files found and name ``VITRINE_GEN_GGUF_FILE``).
    """
    found = sorted(p.name for p in folder.glob(gguf_pattern(profile)) if p.is_file())
    listing = ", ".join(found) or "none"
    if wanted:
        if not (folder / wanted).is_file():
            raise InputError(f"no GGUF file {wanted!r} in {profile.id} (found: {listing})", path=folder / wanted,
                             key="VITRINE_GEN_GGUF_FILE")
        return folder / wanted
    if profile.weight_name and (folder / profile.weight_name).is_file():
        return folder / profile.weight_name
    if len(found) == 1:
        return folder / found[0]
    raise InputError(f"{profile.id} holds {len(found)} GGUF files ({listing}): choose one with "
                     f"VITRINE_GEN_GGUF_FILE=<file name>", path=folder, key="VITRINE_GEN_GGUF_FILE")
