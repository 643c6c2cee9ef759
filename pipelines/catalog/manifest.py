"""The catalog manifest: ``CATALOG/<sku>/manifest.json``. Format documented in docs/catalog-format.md.

The format is defined here once: `build_manifest` (the entry), `input_record` / `spec_input_record` (an input
photo and ``product.yaml``), `subject_record`, `work_record` (a file under ``work/``), `output_record` (an
image a render step made) and `export_record` (a lossy or marketplace copy of one), and `preservation_quality`
(the guarantee's figures in an output's ``quality``). Every kind of entry (products, try-on SKUs) and every
edit builds its records through them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.errors import InputError
from pipelines.imageio import atomic_write_json, sha256_file

if TYPE_CHECKING:
    from pipelines.imageio import LoadedImage
    from pipelines.product import Product

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).parents[1] / "schemas" / "manifest.schema.json"

#: Packages whose versions every manifest records.
RECORDED_PACKAGES = (
    "vitrine", "numpy", "opencv-python-headless", "pillow", "mediapipe", "torch", "diffusers", "transformers",
    "prefect",
)


@lru_cache(maxsize=1)
def manifest_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that every manifest validates against."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_manifest(manifest: dict[str, Any], path: str | Path | None = None) -> None:
    """Validate a manifest against the schema; raises `InputError` naming the first bad key."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(manifest_schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "<root>"
        raise InputError(f"manifest does not match schema v{SCHEMA_VERSION}: {err.message}", path=path, key=key)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and parse a manifest; raises `InputError` for a missing or unparsable file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("manifest not found", path=path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"manifest is not valid JSON: {exc}", path=path) from None
    if not isinstance(data, dict):
        raise InputError("manifest is not a JSON object", path=path)
    return data


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape outputs (missing ones are left out)."""
    out = {}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def build_manifest(product: "Product", content_hash: str, **sections: Any) -> dict[str, Any]:
    """A schema-v1 manifest for a finished entry: the common header filled in, ``sections`` as given.

    Args:
        product (`Product`): the SKU's product folder (its spec fills the ``product`` block).
        content_hash (`str`): the entry's content hash (sha256 hex).
        **sections: ``inputs``, ``engine``, ``models``, ``parameters``, ``subjects``, ``work``, ``outputs``,
            ``quality``, ``timings`` (see docs/catalog-format.md).

    Returns:
        `dict`: the manifest (not yet validated; see `write_manifest`).
    """
    from datetime import UTC, datetime

    from pipelines import __version__

    spec = product.spec
    return {
        "schema_version": SCHEMA_VERSION,
        "sku": product.sku,
        "status": "ok",
        "content_hash": content_hash,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "vitrine_version": __version__,
        "product": {
            "title": spec.title,
            "category": spec.category,
            "garment_type": spec.garment_type,
            "commercial": spec.commercial,
            "marketplaces": list(spec.marketplaces),
            "spec": spec.model_dump(mode="json"),
        },
        **sections,
        "packages": package_versions(),
        "review": {"status": "pending", "updated_at": None},
    }


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> Path:
    """Validate a manifest against the schema, then write it atomically as ``folder/manifest.json``."""
    path = Path(folder) / MANIFEST_NAME
    validate_manifest(manifest, path=path)
    atomic_write_json(path, manifest)
    return path


PENDING = "pending"


def pending_review() -> dict[str, str]:
    """The ``review`` of a new output: ``{"status": "pending"}``."""
    return {"status": PENDING}


def work_record(rel: str, kind: str, sha256: str) -> dict[str, Any]:
    """One entry of ``work[]``: a file under ``work/`` (``rel``), what it is, its sha256."""
    return {"file": rel, "kind": kind, "sha256": sha256}


def input_record(path: Path, img: LoadedImage, normalized: str, role: str) -> dict[str, Any]:
    """One photo of ``inputs[]``: the file's hash, how it was normalised, its normalised copy and its role."""
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "source_size": list(img.source_size),
        "size": [int(img.rgb.shape[1]), int(img.rgb.shape[0])],
        "source_mode": img.source_mode,
        "exif_rotated": img.exif_rotated,
        "icc_converted": img.icc_converted,
        "scale": img.scale,
        "has_alpha": img.alpha is not None,
        "normalized": normalized,
        "role": role,
    }


def spec_input_record(spec_path: Path) -> dict[str, Any]:
    """``product.yaml`` in ``inputs[]``."""
    return {"file": spec_path.name, "sha256": sha256_file(spec_path), "role": "spec"}


def subject_record(input_name: str, kind: str, subject: Any, alpha: str, mask: str,
                   metrics: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``subjects[]``: the subject found in ``input_name`` (a `pipelines.segmentation.subject.Subject`) and
    its alpha and mask work files; the caller adds ``quality``, ``controls``, ``worn`` as it has them."""
    return {
        "input": input_name,
        "kind": kind,
        "source": subject.source,
        "reason": subject.reason,
        "bbox": list(subject.bbox),
        "alpha": alpha,
        "mask": mask,
        "metrics": metrics,
    }


def output_record(file: str, sha256: str, kind: str, size: tuple[int, int], **fields: Any) -> dict[str, Any]:
    """One PNG of ``outputs[]`` a render step (or an edit) made.

    Args:
        file (`str`), sha256 (`str`), kind (`str`): the file, its hash, ``main``/``lifestyle``/``alternate``/
            ``tryon``/``edit``.
        size (`tuple[int, int]`): (width, height).
        **fields: the kind's own keys, in the order they are recorded (``seed``, ``source_input``,
            ``placement`` or ``garment_transform``, the guarantee's masks, ``quality``...).

    Returns:
        `dict`: ``file``, ``sha256``, ``kind``, ``format``, ``lossy``, ``width``, ``height``, the ``fields``,
        and ``review`` (pending) last.
    """
    return {"file": file, "sha256": sha256, "kind": kind, "format": "png", "lossy": False,
            "width": int(size[0]), "height": int(size[1]), **fields, "review": pending_review()}


def export_record(file: str, fmt: str, size: tuple[int, int], derived_from: str, *, sha256: str | None = None,
                  **fields: Any) -> dict[str, Any]:
    """One export of ``outputs[]``: ``derived_from``'s pixels as ``fmt`` (``jpeg``, ``webp``, ``png``).

    ``sha256`` follows ``file`` when known; an export whose file is written later gets it appended then.
    ``fields`` (``background``, ``marketplace``) follow ``derived_from``; ``review`` (pending) is last.
    """
    head: dict[str, Any] = {"file": file} if sha256 is None else {"file": file, "sha256": sha256}
    return {**head, "kind": "export", "format": fmt, "lossy": fmt != "png", "width": int(size[0]),
            "height": int(size[1]), "derived_from": derived_from, **fields, "review": pending_review()}


def preservation_quality(preserved: dict[str, Any] | None, seam_band_pixels: int) -> dict[str, Any]:
    """The guarantee's figures in an output's ``quality``: ``preserved_pixels``, ``preserved_identical_fraction``
    (left out without a guarantee, ``preserved`` `None`) and ``seam_band_pixels``."""
    if preserved is None:
        return {"preserved_pixels": 0, "seam_band_pixels": int(seam_band_pixels)}
    return {"preserved_pixels": preserved["pixels"], "preserved_identical_fraction": preserved["identical_fraction"],
            "seam_band_pixels": int(seam_band_pixels)}
