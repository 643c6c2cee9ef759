"""One model identity across a catalog: a named preset (seed, prompt, optional reference face) per batch.

Generative models drift: each SKU rendered with its own seed and prompt gets a different person, and
Kontext drifts faces across edits. An *identity preset* pins the model for a whole batch::

    # products/_identities/ana.yaml   (folders starting with "_" are not SKUs)
    name: ana                        # optional; defaults to the file's stem
    seed: 1234                       # required, in [0, 2**32 - 1]
    prompt: "woman in her early 30s, shoulder-length dark brown hair, light freckles"   # required
    reference_face: ana-face.jpg     # optional, relative to this file

``vitrine run PRODUCTS --identity ana`` and ``vitrine edit CATALOG --identity ana`` (a name, looked up in
``$VITRINE_IDENTITIES``, ``PRODUCTS/_identities/`` and ``CATALOG/_identities/``; or a path to the YAML):

- every SKU of the batch gets the preset's seed (``seeds: [seed]``) and person prompt (``prompts.person``)
  for generation (`apply_batch_overrides`, called by `pipelines.catalog.render`);
- every Kontext edit of the batch runs with the preset's seed, the prompt appended to the instruction,
  and the reference face beside the image in Kontext's context (``pipelines.catalog.edits``);
- the manifest records the preset (name, seed, prompt, sha256 of the file and of the reference face) with
  every SKU and edit, so it can be checked that one identity was used throughout.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.errors import InputError
from pipelines.imageio import sha256_file

if TYPE_CHECKING:
    from pipelines.product import Product

IDENTITY_DIR = "_identities"
_SEED_MAX = 2**32 - 1


class _IdentityFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    seed: Annotated[int, Field(ge=0, le=_SEED_MAX)]
    prompt: Annotated[str, Field(min_length=1, max_length=1000)]
    reference_face: Annotated[str, Field(min_length=1)] | None = None


@dataclasses.dataclass(frozen=True)
class IdentityPreset:
    """A model identity preset.

    Attributes:
        name (`str`): the preset's name.
        seed (`int`): the generation/edit seed, in [0, 2**32 - 1].
        prompt (`str`): the person's description (replaces ``prompts.person``; appended to edit instructions).
        path (`Path`): the YAML file it was read from.
        sha256 (`str`): sha256 of that file.
        reference_face (`Path`, *optional*): a face photo, used as Kontext's reference image in edits.
        reference_sha256 (`str`, *optional*): its sha256.
    """

    name: str
    seed: int
    prompt: str
    path: Path
    sha256: str
    reference_face: Path | None = None
    reference_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        """What manifests and content hashes record: name, seed, prompt, the file's sha256, the face's
        file name and sha256 (no absolute paths: moving the presets does not invalidate a catalog)."""
        face = {"file": self.reference_face.name, "sha256": self.reference_sha256} if self.reference_face else None
        return {"name": self.name, "seed": self.seed, "prompt": self.prompt, "sha256": self.sha256,
                "reference_face": face}

    def reference_image(self, max_side: int = 1024) -> np.ndarray | None:
        """The reference face as HxWx3 uint8 RGB (longer side at most ``max_side``), or `None`."""
        if self.reference_face is None:
            return None
        from pipelines.imageio import load_image

        return load_image(self.reference_face, max_side=max_side).rgb


def read_identity(path: str | Path) -> IdentityPreset:
    """Read and validate an identity preset YAML.

    Raises:
        `InputError`: unreadable file, bad YAML, unknown or missing keys, bad values, a missing reference face.
            The error names the file and the key.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("identity preset not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the identity preset: {exc}", path) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", path) from None
    if not isinstance(data, dict):
        raise InputError("an identity preset must be a mapping with seed and prompt", path)
    try:
        spec = _IdentityFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err.get("loc", ())) or None
        msg = "unknown key (allowed: name, seed, prompt, reference_face)" if err.get("type") == "extra_forbidden" \
            else str(err.get("msg", "invalid value"))
        raise InputError(msg, path, key) from None
    face = face_sha = None
    if spec.reference_face is not None:
        face = (path.parent / spec.reference_face).resolve()
        if not face.is_file():
            raise InputError(f"reference face {spec.reference_face!r} not found next to the preset", path,
                             "reference_face")
        face_sha = sha256_file(face)
    return IdentityPreset(name=spec.name or path.stem, seed=spec.seed, prompt=spec.prompt.strip(), path=path,
                         sha256=sha256_file(path), reference_face=face, reference_sha256=face_sha)


def identity_dirs(*roots: str | Path | None, first: tuple[Path, ...] | list[Path] = ()) -> list[Path]:
    """Where preset names are looked up: the folders ``first`` (`VitrineSettings.identities_dirs`, from
    ``$VITRINE_IDENTITIES``), then ``<root>/_identities`` for each root given (the products folder, the
    catalog)."""
    dirs = [Path(d) for d in first]
    dirs += [Path(r) / IDENTITY_DIR for r in roots if r is not None]
    return dirs


def load_identity(ref: str | Path, search: list[Path] | None = None) -> IdentityPreset:
    """An identity preset by path (``ana.yaml``, ``presets/ana.yaml``) or by name (``ana``).

    Args:
        ref (`str | Path`): a YAML file, or a name looked up as ``<dir>/<name>.yaml`` / ``.yml`` in ``search``.
        search (`list[Path]`, *optional*): folders for names (see `identity_dirs`).

    Raises:
        `InputError`: not found (naming where it looked), or an invalid preset.
    """
    p = Path(ref)
    if p.suffix.lower() in (".yaml", ".yml") or p.is_file():
        return read_identity(p)
    tried = []
    for d in search or []:
        for suffix in (".yaml", ".yml"):
            cand = d / f"{ref}{suffix}"
            tried.append(str(cand))
            if cand.is_file():
                return read_identity(cand)
    where = ", ".join(tried) or "nowhere (give a path to the YAML file)"
    raise InputError(f"identity preset {str(ref)!r} not found; looked in {where}", key="identity")


def apply_batch_overrides(product: Product, options: Any) -> Product:
    """The product as the batch sees it: the identity preset's seed and person prompt, and the batch's
    commercial flag, applied to its settings. Returns ``product`` itself when there is nothing to apply.

    Args:
        product (`Product`): a validated product folder.
        options: a `pipelines.catalog.options.RenderOptions` (reads ``identity`` and ``commercial``).
    """
    ident = getattr(options, "identity", None)
    commercial = bool(getattr(options, "commercial", False))
    if not ident and not commercial:
        return product
    spec = product.spec
    update: dict[str, Any] = {}
    if commercial and not spec.commercial:
        update["commercial"] = True
    if ident:
        update["seeds"] = [int(ident["seed"])]
        update["prompts"] = spec.prompts.model_copy(update={"person": str(ident["prompt"])})
    if not update:
        return product
    return dataclasses.replace(product, spec=spec.model_copy(update=update))
