"""The catalog manifest: ``CATALOG/<sku>/manifest.json``. Format documented in docs/catalog-format.md."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.errors import InputError

if TYPE_CHECKING:
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
    from pipelines.imageio import atomic_write_json

    path = Path(folder) / MANIFEST_NAME
    validate_manifest(manifest, path=path)
    atomic_write_json(path, manifest)
    return path
