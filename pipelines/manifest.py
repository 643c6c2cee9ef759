"""The catalog manifest: ``CATALOG/<sku>/manifest.json``. Format documented in docs/catalog-format.md."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import InputError

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).parent / "schemas" / "manifest.schema.json"

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
