"""Kontext edits of catalog outputs, written as new versions: the original is kept, the manifest links them.

`edit_output` edits one output of a catalog entry (``CATALOG/<sku>/<output>``):

1. checks: the SKU and output exist, the output is not an export, the file still has the sha256 the caller
   expected (a reviewer's request is for the pixels they saw), and the licence guard (FLUX.1-Kontext-dev is
   non-commercial: a commercial SKU or batch is refused with the alternatives named);
2. the edit (`pipelines.edit.kontext.KontextEditor`): Kontext's preferred resolution, then restored to the
   output's exact size and aspect ratio; with an identity preset, its seed, prompt and reference face;
3. the garment rule (`pipelines.edit.rules`): unless the instruction targets the garment, the garment's
   pixels are pasted back from the edited image with its alpha (bit-identical inside the eroded mask) and
   only the seam band around it is repaired (classic seam inpainting). The garment's mask is the output's
   ``product_mask`` (a garment placed by the catalog or a try-on); when the kept subject is a whole person
   and the instruction is about the person (``"make the model smile"``), only what the person wears is
   kept (`pipelines.tryon.worn`, from the output's pose);
4. the guarantee is checked (inside the eroded kept mask the new image equals its parent bit for bit; only
   the seam band differs from the composite), then, under the SKU's lock (`pipelines.catalog.store.sku_lock`),
   the manifest is re-read, the output is checked again to be unchanged, the new file
   ``<stem>.edit-<N>.png`` (and exports like the original's, e.g. ``<stem>.edit-<N>.jpg``) and the updated
   manifest are written into a staging copy of the entry (``CATALOG/.staging/``), which then replaces the
   entry in one rename, as a render does: a crash or a full disk leaves the live entry as it was.
   An edit that answers a review request is idempotent per decision id: when the manifest already holds
   an edit made for that decision (a run that died before it recorded the result), that edit is returned
   and nothing is edited again. The new output has kind ``edit``, ``derived_from`` its parent, and an
   ``edit`` record (instruction, prompt, model and licence, seed, parameters, sizes, the garment decision,
   the identity preset, the parent and its sha256, the version number). The parent's entry and file are
   never changed.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from filelock import Timeout

from pipelines.catalog.store import _restore_trashed, commit_entry, sku_lock, stage_entry_copy
from pipelines.compositing.seam import inpaint_seam
from pipelines.compositing.composite import alpha_composite, preserve_mask, seam_band
from pipelines.errors import InputError, VitrineError
from pipelines.imageio import atomic_write_json, save_image, save_mask, sha256_file
from pipelines.models.licence import check_commercial_use, merge_model_records
from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest, validate_manifest
from pipelines.product import validate_sku
from pipelines.edit.identity import IdentityPreset
from pipelines.edit.kontext import EditParams, KontextEditor
from pipelines.edit.rules import classify_instruction, product_garment_words, recomposite_garment

logger = logging.getLogger(__name__)

FLUX_KONTEXT = "black-forest-labs/FLUX.1-Kontext-dev"
#: Output kinds edited by default (marketplace white-background images are only edited when named).
DEFAULT_KINDS = ("lifestyle", "tryon", "edit")
_EDIT_RE = re.compile(r"^(?P<root>.+)\.edit-(?P<n>\d+)$")


class EditConflictError(VitrineError):
    """The output changed (or the SKU stayed locked) while the edit ran; nothing was written."""


@dataclass
class EditResult:
    """One applied edit.

    Attributes:
        sku (`str`): the SKU.
        parent (`str`): the edited output's file.
        new_output (`str`): the new version's file, relative to ``CATALOG/<sku>/``.
        exports (`list[str]`): exports written for it (``<stem>.edit-N.jpg``...).
        record (`dict`): the new output's manifest entry.
    """

    sku: str
    parent: str
    new_output: str
    exports: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"sku": self.sku, "parent": self.parent, "new_output": self.new_output, "exports": self.exports}


# --------------------------------------------------------------------------------------------------
# The Kontext model
# --------------------------------------------------------------------------------------------------


def load_kontext_editor(model_root: str | Path | None = None, settings=None) -> tuple[KontextEditor, dict[str, Any]]:
    """FLUX.1-Kontext-dev through Vitrine's loader (`load_pipeline`: once per process, cached).

    Its text encoders and VAE are taken from a FLUX.1 base found under the same root (shared with the
    generative engine of the same process), else from the Kontext repo itself.

    Args:
        model_root (`str | Path`, *optional*): ``DIR/<org>/<name>/`` layout; then the
            Hugging Face cache.
        settings (`GenerationSettings`, *optional*): device, dtype, offload...; defaults to
            `GenerationSettings()` (the flows pass `VitrineSettings.generation`).

    Returns:
        `tuple`: (`KontextEditor`, the model's manifest record with its licence).

    Raises:
        `ModelNotFoundError`: Kontext is not found (the message says where it looked and how to fetch it).
    """
    from pipelines.generation.loading import LoadContext, load_pipeline
    from pipelines.models.profiles import get_profile, list_profiles
    from pipelines.generation.settings import GenerationSettings
    from pipelines.models.licence import model_record
    from pipelines.models.location import find, locate

    settings = settings or GenerationSettings()
    profile = get_profile(FLUX_KONTEXT)
    path = locate(profile.id, model_root, required_files=profile.required_files, revision=profile.revision).path
    base = next((p for p in list_profiles("flux", "base")
                 if find(p.id, model_root, required_files=p.required_files, revision=p.revision)), None)
    pipe = load_pipeline(profile, base=base, ctx=LoadContext(model_root, settings))
    revision = profile.revision or (path.name if path.parent.name == "snapshots" else None)
    return KontextEditor(pipe, model_id=profile.id), model_record(profile, role="edit", revision=revision, source=path)


def default_edit_params(settings=None) -> EditParams:
    """Kontext's defaults (28 steps, guidance 2.5, 512 tokens) with ``VITRINE_GEN_STEPS`` / ``GUIDANCE`` /
    ``WORK_SIDE`` applied when set."""
    from pipelines.models.profiles import get_profile

    p = get_profile(FLUX_KONTEXT)
    steps = (settings.steps if settings is not None and settings.steps else None) or p.steps or 28
    guidance = settings.guidance if settings is not None and settings.guidance is not None else (p.guidance or 2.5)
    work_side = settings.work_side if settings is not None else None
    return EditParams(steps=steps, guidance=guidance, max_sequence_length=p.max_sequence_length or 512,
                      work_side=work_side)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def _read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L")).copy()


def editable_outputs(manifest: dict[str, Any], *, kinds: tuple[str, ...] = DEFAULT_KINDS,
                     latest_only: bool = True) -> list[str]:
    """The outputs an instruction edit applies to by default: reviewable outputs of ``kinds``, and with
    ``latest_only`` only the newest version of each (an output no edit was made from yet)."""
    outs = manifest.get("outputs", [])
    parents = {o.get("derived_from") for o in outs if o.get("kind") == "edit"}
    return [o["file"] for o in outs if o.get("kind") in kinds and (not latest_only or o["file"] not in parents)]


def _next_version(manifest: dict[str, Any], sku_dir: Path, root_stem: str) -> int:
    n = 0
    names = [Path(o["file"]).stem for o in manifest.get("outputs", [])]
    names += [p.stem for p in sku_dir.glob(f"{glob_escape(root_stem)}.edit-*")]
    for stem in names:
        m = _EDIT_RE.match(stem)
        if m and m.group("root") == root_stem:
            n = max(n, int(m.group("n")))
    return n + 1


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _subject_kind(manifest: dict[str, Any], output: dict[str, Any]) -> str | None:
    if output.get("kind") == "tryon" or "garment_transform" in output:
        return "garment"
    src = output.get("source_input")
    for s in manifest.get("subjects", []):
        if s.get("input") == src:
            return s.get("kind")
    return None


def _worn_on_output(image: np.ndarray, person_alpha: np.ndarray, garment_type: str | None) -> np.ndarray:
    """What the person in an output wears (pose region x the person's alpha)."""
    from pipelines.controls.pose import get_pose_estimator
    from pipelines.tryon.worn import worn_garment_mask

    gt = garment_type if garment_type in ("upper", "outerwear", "dress", "lower") else "upper"
    pose = get_pose_estimator()(image)
    mask, _ = worn_garment_mask(image, person_alpha, gt, pose=pose)
    return mask


def _edit_for_decision(manifest: dict[str, Any], sku: str, decision_id: str | None) -> EditResult | None:
    """The edit already in ``manifest`` made for the review decision ``decision_id``, if any."""
    if decision_id is None:
        return None
    outs = manifest.get("outputs", [])
    for o in outs:
        if o.get("kind") == "edit" and (o.get("edit") or {}).get("decision_id") == decision_id:
            exports = [e["file"] for e in outs if e.get("kind") == "export" and e.get("derived_from") == o["file"]]
            return EditResult(sku=sku, parent=o.get("derived_from", ""), new_output=o["file"], exports=exports,
                              record=o)
    return None


# --------------------------------------------------------------------------------------------------
# One edit
# --------------------------------------------------------------------------------------------------


def edit_output(
    catalog_dir: str | Path,
    sku: str,
    output: str,
    instruction: str,
    editor: KontextEditor,
    *,
    model: dict[str, Any] | None = None,
    params: EditParams | None = None,
    seed: int | None = None,
    identity: IdentityPreset | None = None,
    garment: str = "auto",
    commercial: bool = False,
    expected_sha256: str | None = None,
    decision_id: str | None = None,
    lock_timeout: float = 30.0,
) -> EditResult:
    """Apply a Kontext edit to one catalog output and add the result to the manifest as a new version.

    Args:
        catalog_dir (`str | Path`): the catalog root.
        sku (`str`): the SKU.
        output (`str`): the output's ``file`` in the manifest (e.g. ``lifestyle-studio-s0.png``).
        instruction (`str`): the edit, e.g. ``"replace the floor with white marble"``.
        editor (`KontextEditor`): the Kontext model (`load_kontext_editor`).
        model (`dict`, *optional*): its manifest record (id, revision, licence); defaults to the record of the
            editor's ``model_id`` (`pipelines.models.licence.model_record`).
        params (`EditParams`, *optional*): steps, guidance, fit; defaults to `EditParams()`.
        seed (`int`, *optional*): the seed; defaults to the identity preset's, else the output's, else 0.
        identity (`IdentityPreset`, *optional*): the batch's model identity (seed, prompt, reference face).
        garment (`str`, *optional*, defaults to ``"auto"``): ``auto`` (the rule of `pipelines.edit.rules`),
            ``keep`` (always paste the garment back) or ``release`` (never).
        commercial (`bool`, *optional*, defaults to `False`): the batch is commercial (the SKU's own
            ``commercial`` flag is read from its manifest and applies too).
        expected_sha256 (`str`, *optional*): the output's sha256 the request was made for.
        decision_id (`str`, *optional*): the review decision this edit answers (recorded).
        lock_timeout (`float`, *optional*, defaults to 30): seconds to wait for the SKU's lock when writing.

    Returns:
        `EditResult`.

    Raises:
        `InputError`: unknown SKU/output, an export, an empty instruction, ``garment="keep"`` with no garment
            mask; `LicenceError`: a commercial SKU or batch; `EditConflictError`: the output changed or the
            SKU stayed locked; `VitrineError`: a broken guarantee (nothing written).
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    # 1. Check inputs
    catalog = Path(catalog_dir)
    validate_sku(sku)
    sku_dir = catalog / sku
    manifest_path = sku_dir / MANIFEST_NAME
    if not manifest_path.is_file() and (catalog / ".trash").is_dir():  # a commit killed between its renames
        with sku_lock(catalog, sku, lock_timeout):
            _restore_trashed(catalog, sku, sku_dir)
    if not manifest_path.is_file():
        raise InputError(f"no catalog entry for SKU {sku!r}", path=sku_dir, key="sku")
    manifest = read_manifest(manifest_path)
    done = _edit_for_decision(manifest, sku, decision_id)
    if done is not None:  # applied by a run that died before it recorded the result: not again
        logger.info("edit: %s/%s was already applied for decision %s (%s)", sku, output, decision_id, done.new_output)
        return done
    by_file = {o["file"]: o for o in manifest.get("outputs", [])}
    parent = by_file.get(output)
    if parent is None:
        raise InputError(f"SKU {sku!r} has no output {output!r}; it has {', '.join(sorted(by_file))}",
                         path=manifest_path, key="output")
    if parent.get("kind") == "export":
        raise InputError(f"{output!r} is an export of {parent.get('derived_from')!r}; edit that output",
                         path=manifest_path, key="output")
    if expected_sha256 is not None and expected_sha256 != parent["sha256"]:
        raise EditConflictError(f"{sku}/{output} changed since the edit was requested")
    parent_path = sku_dir / output
    if sha256_file(parent_path) != parent["sha256"]:
        raise EditConflictError(f"{parent_path}: the file does not match its manifest sha256 (changed meanwhile)")
    product = manifest.get("product") or {}
    is_commercial = bool(commercial or product.get("commercial"))
    subject = "the batch (--commercial)" if commercial else f"SKU {sku}"
    if model is None:
        from pipelines.models.licence import model_record

        model = model_record(getattr(editor, "model_id", None) or FLUX_KONTEXT, role="edit")
    model = dict(model)
    check_commercial_use([model["id"]], commercial=is_commercial, what="the Kontext edit", subject=subject,
                         path=manifest_path, key="product.commercial")
    params = params or EditParams()
    target = classify_instruction(instruction, extra_garment_words=product_garment_words(
        product.get("title"), ((product.get("spec") or {}).get("prompts") or {}).get("garment")))
    recomposite = recomposite_garment(garment, target)

    # 2. The parent, its masks and what to keep
    image = _read_rgb(parent_path)
    h, w = image.shape[:2]
    render = (manifest.get("parameters") or {}).get("render") or {}
    erode_px = int(render.get("preserve_erode_px", 3))
    inner_px, outer_px = int(render.get("seam_inner_px", 3)), int(render.get("seam_outer_px", 4))
    kind = _subject_kind(manifest, parent)
    alpha = None
    mask_source = None
    reason = "the instruction targets the garment" if target.garment else ""
    if recomposite:
        if parent.get("product_mask"):
            alpha = _read_mask(sku_dir / parent["product_mask"])
            mask_source = "product-mask"
            if kind == "person" and target.person:
                worn = _worn_on_output(image, alpha, product.get("garment_type"))
                alpha = np.where(worn > 0, alpha, 0).astype(np.uint8)
                mask_source = "worn-garment (the person's clothes: the instruction is about the person)"
        if alpha is None or not (alpha == 255).any():
            if garment == "keep":
                raise InputError(f"{output!r} has no garment mask to keep", path=manifest_path, key="garment")
            recomposite, reason = False, "the output has no garment mask"
            alpha = None
    if garment == "release":
        reason = "--garment release"
    elif garment == "keep":
        reason = "--garment keep"
    elif recomposite:
        reason = "the instruction does not target the garment"
    timings["prepare_s"] = round(time.perf_counter() - t0, 4)

    # 3. The edit: the identity's seed, prompt and reference face; the output's exact size
    t = time.perf_counter()
    if identity is not None:
        seed = identity.seed
    elif seed is None:
        seed = int(parent.get("seed", 0) or 0)
    prompt = instruction.strip()
    reference = None
    if identity is not None:
        prompt += f" The model: {identity.prompt}."
        reference = identity.reference_image()
        if reference is not None:
            prompt += " Give the person on the left the face of the portrait on the right; show only the left image."
    result = editor(image, prompt, seed=seed, params=params, reference=reference)
    edited = result.image
    if edited.shape != image.shape:
        raise VitrineError(f"the edit of {output} came back {edited.shape[1]}x{edited.shape[0]}, not {w}x{h}")
    timings["edit_s"] = round(time.perf_counter() - t, 4)

    # 4. Garment pixels back (bit-identical inside the eroded mask), seam band repaired, guarantee checked
    t = time.perf_counter()
    keep = band = None
    final = edited
    if recomposite:
        composite = alpha_composite(edited, image, alpha)
        band = seam_band(alpha, inner_px, outer_px)
        final = inpaint_seam(composite, image, alpha, edited, band)
        keep = preserve_mask(alpha, erode_px)
        if parent.get("preserve_mask"):
            keep = np.where(_read_mask(sku_dir / parent["preserve_mask"]) > 0, keep, 0).astype(np.uint8)
        if not np.array_equal(final[keep > 0], image[keep > 0]):
            raise VitrineError(f"{output}: garment pixels changed inside the preserve mask; refusing to write")
        outside = int(np.any(final != composite, axis=2)[band == 0].sum())
        if outside:
            raise VitrineError(f"{output}: the seam repair touched {outside} pixels outside the band")
    from pipelines.tryon.fidelity import garment_fidelity

    gmask = np.where(_read_mask(sku_dir / parent["product_mask"]) >= 128, 255, 0).astype(np.uint8) \
        if parent.get("product_mask") else np.zeros((h, w), np.uint8)
    fidelity = garment_fidelity(image, final, gmask)
    timings["composite_s"] = round(time.perf_counter() - t, 4)

    # 5. Write under the SKU's lock: re-read, re-check, file(s) and manifest into staging, then commit
    lock = sku_lock(catalog, sku, lock_timeout)
    staging: Path | None = None
    try:
        lock.acquire()
    except Timeout:
        raise EditConflictError(f"SKU {sku!r} stayed locked for {lock_timeout:.0f} s (a run is writing it)") from None
    try:
        manifest = read_manifest(manifest_path)
        done = _edit_for_decision(manifest, sku, decision_id)
        if done is not None:  # another run applied it while this one was editing
            return done
        by_file = {o["file"]: o for o in manifest.get("outputs", [])}
        current = by_file.get(output)
        if current is None or current["sha256"] != parent["sha256"]:
            raise EditConflictError(f"{sku}/{output} was re-rendered or removed while the edit ran")
        root = (parent.get("edit") or {}).get("root") or output
        root_stem = Path(root).stem
        version = _next_version(manifest, sku_dir, root_stem)
        new_file = f"{root_stem}.edit-{version}.png"
        new_stem = Path(new_file).stem
        png_level = int(render.get("png_compress_level", 1))
        work_added: list[dict[str, Any]] = []
        staging = stage_entry_copy(catalog, sku)  # the next version is built here, then renamed into place
        rec: dict[str, Any] = {
            "file": new_file, "sha256": "", "kind": "edit", "format": "png", "lossy": False, "width": w, "height": h,
            "seed": int(seed), "derived_from": output,
        }
        if recomposite:
            for key in ("source_input", "placement", "garment_input", "garment_transform", "product_mask",
                        "preserve_mask", "seam_band"):
                if key in parent:
                    rec[key] = parent[key]
            if mask_source != "product-mask":  # a new, smaller kept mask: its own work files
                for name, kind_, arr in (("product-mask", "product-mask", alpha), ("preserve-mask", "preserve-mask", keep),
                                         ("seam-band", "seam-band", band)):
                    rel = f"work/{new_stem}.{name}.png"
                    work_added.append({"file": rel, "kind": kind_, "sha256": save_mask(staging / rel, arr)})
                    rec[name.replace("-", "_")] = rel
        rec["quality"] = {
            "size_preserved": True,
            "preserved_pixels": int((keep > 0).sum()) if keep is not None else 0,
            "preserved_identical_fraction": 1.0 if keep is not None else None,
            "seam_band_pixels": int((band > 0).sum()) if band is not None else 0,
            "garment_fidelity_to_parent": fidelity,
        }
        if rec["quality"]["preserved_identical_fraction"] is None:
            del rec["quality"]["preserved_identical_fraction"]
        rec["edit"] = {
            "instruction": instruction.strip(),
            "prompt": prompt,
            "model": model,
            "seed": int(seed),
            "params": params.to_json(),
            "kontext": {k: v for k, v in result.record.items() if k not in ("instruction", "params", "seed")},
            "garment": {"policy": garment, "recomposited": recomposite, "reason": reason,
                        "mask": mask_source if recomposite else None, **target.to_json()},
            "identity": identity.to_json() if identity is not None else None,
            "parent": output,
            "parent_sha256": parent["sha256"],
            "root": root,
            "version": version,
            "decision_id": decision_id,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "timings": timings,
        }
        rec["review"] = {"status": "pending"}
        new_outputs = [rec]
        exports = []
        quality_jpeg = int(render.get("jpeg_quality", 92))
        for o in manifest["outputs"]:
            if o.get("kind") == "export" and o.get("derived_from") == output and o.get("format") in ("jpeg", "webp"):
                ext = ".jpg" if o["format"] == "jpeg" else ".webp"
                exports.append({"file": f"{new_stem}{ext}", "sha256": "", "kind": "export", "format": o["format"],
                                "lossy": True, "width": w, "height": h, "derived_from": new_file,
                                "review": {"status": "pending"}})
        new_outputs += exports
        probe = dict(manifest, outputs=[*manifest["outputs"], *[dict(r, sha256="0" * 64) for r in new_outputs]],
                     work=[*manifest.get("work", []), *work_added])
        validate_manifest(probe, path=manifest_path)  # before any image is written
        rec["sha256"] = save_image(staging / new_file, final, compress_level=png_level)
        for e in exports:
            e["sha256"] = save_image(staging / e["file"], final, quality=quality_jpeg)
        from pipelines.catalog.review import review_counts, sku_review_status

        manifest["outputs"] = [*manifest["outputs"], *new_outputs]
        manifest["work"] = [*manifest.get("work", []), *work_added]
        manifest["models"] = merge_model_records(manifest.get("models", []), [model])
        manifest["review"] = {**(manifest.get("review") or {}), "status": sku_review_status(manifest["outputs"]),
                              "counts": review_counts(manifest["outputs"])}
        validate_manifest(manifest, path=manifest_path)
        atomic_write_json(staging / MANIFEST_NAME, manifest)
        commit_entry(staging, catalog, sku)
        staging = None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        lock.release()
    logger.info("edit: %s/%s -> %s (%s)", sku, output, new_file, instruction)
    return EditResult(sku=sku, parent=output, new_output=new_file, exports=[e["file"] for e in exports], record=rec)
