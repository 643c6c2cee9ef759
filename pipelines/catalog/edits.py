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

from pipelines.catalog.guarantee import Guarantee, check_guarantee
from pipelines.catalog.manifest import (
    MANIFEST_NAME,
    export_record,
    output_record,
    preservation_quality,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from pipelines.catalog.review import review_counts, sku_review_status
from pipelines.catalog.store import commit_entry, restore_trashed, sku_lock, stage_entry_copy
from pipelines.catalog.workfiles import EntryWriter
from pipelines.compositing.composite import alpha_composite, preserve_mask, seam_band
from pipelines.compositing.seam import inpaint_seam
from pipelines.controls.pose import get_pose_estimator
from pipelines.edit.identity import IdentityPreset
from pipelines.edit.kontext import EditOutput, EditParams, KontextEditor
from pipelines.edit.rules import InstructionTarget, classify_instruction, product_garment_words, recomposite_garment
from pipelines.errors import InputError, VitrineError
from pipelines.imageio import sha256_file
from pipelines.models.licence import check_commercial_use, merge_model_records, model_record
from pipelines.models.profiles import get_profile
from pipelines.product import validate_sku
from pipelines.tryon.fidelity import garment_fidelity
from pipelines.tryon.worn import worn_garment_mask

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
    from pipelines.generation.settings import GenerationSettings
    from pipelines.models.location import find, locate
    from pipelines.models.profiles import list_profiles

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
    p = get_profile(FLUX_KONTEXT)
    steps = (settings.steps if settings is not None and settings.steps else None) or p.steps or 28
    guidance = settings.guidance if settings is not None and settings.guidance is not None else (p.guidance or 2.5)
    work_side = settings.work_side if settings is not None else None
    return EditParams(steps=steps, guidance=guidance, max_sequence_length=p.max_sequence_length or 512,
                      work_side=work_side)


#: The keys of a parent output an edit that keeps the garment records too (what its guarantee refers to).
KEPT_KEYS = ("source_input", "placement", "garment_input", "garment_transform", "product_mask", "preserve_mask",
             "seam_band")


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
    """The next edit version of ``root_stem``: 1 + the highest ``<root_stem>.edit-<N>`` among the outputs, the
    stale edits kept in ``history/`` and the files in the entry (a version name is never reused)."""
    n = 0
    names = [Path(o["file"]).stem for o in [*manifest.get("outputs", []), *manifest.get("stale_edits", [])]]
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


@dataclass
class _Parent:
    """The entry and output an edit starts from (read and checked before any work)."""

    catalog: Path
    sku: str
    manifest_path: Path
    manifest: dict[str, Any]
    record: dict[str, Any]

    @property
    def sku_dir(self) -> Path:
        return self.catalog / self.sku

    @property
    def file(self) -> str:
        return self.record["file"]

    @property
    def render(self) -> dict[str, Any]:
        """The render parameters the entry was made with (erosion, seam band, PNG and JPEG settings)."""
        return (self.manifest.get("parameters") or {}).get("render") or {}


@dataclass
class _Kept:
    """What an edit keeps of its parent: the garment decision and, when it keeps the garment, its mask."""

    recomposite: bool
    reason: str
    alpha: np.ndarray | None = None
    mask_source: str | None = None


@dataclass
class _Edited:
    """The edit step's result: the new version's pixels and what it promises (`pipelines.catalog.guarantee`)."""

    final: np.ndarray
    guarantee: Guarantee | None
    preserved: dict[str, Any] | None
    fidelity: dict[str, Any]
    prompt: str
    seed: int
    result: EditOutput


def _read_entry(catalog: Path, sku: str, lock_timeout: float) -> tuple[Path, dict[str, Any]]:
    """The SKU's manifest (restoring an entry a commit killed between its renames left in the trash)."""
    validate_sku(sku)
    sku_dir = catalog / sku
    manifest_path = sku_dir / MANIFEST_NAME
    if not manifest_path.is_file() and (catalog / ".trash").is_dir():  # a commit killed between its renames
        with sku_lock(catalog, sku, lock_timeout):
            restore_trashed(catalog, sku, sku_dir)
    if not manifest_path.is_file():
        raise InputError(f"no catalog entry for SKU {sku!r}", path=sku_dir, key="sku")
    return manifest_path, read_manifest(manifest_path)


def _parent_output(catalog: Path, sku: str, manifest_path: Path, manifest: dict[str, Any], output: str,
                   expected_sha256: str | None) -> _Parent:
    """The output to edit: it exists, is not an export, and its file has the sha256 expected and recorded."""
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
    parent_path = catalog / sku / output
    if sha256_file(parent_path) != parent["sha256"]:
        raise EditConflictError(f"{parent_path}: the file does not match its manifest sha256 (changed meanwhile)")
    return _Parent(catalog, sku, manifest_path, manifest, parent)


def _licensed_model(parent: _Parent, editor: KontextEditor, model: dict[str, Any] | None,
                    commercial: bool) -> dict[str, Any]:
    """The Kontext model's record, after the licence guard (a commercial SKU or batch is refused)."""
    product = parent.manifest.get("product") or {}
    subject = "the batch (--commercial)" if commercial else f"SKU {parent.sku}"
    model = dict(model if model is not None else
                 model_record(getattr(editor, "model_id", None) or FLUX_KONTEXT, role="edit"))
    check_commercial_use([model["id"]], commercial=bool(commercial or product.get("commercial")),
                         what="the Kontext edit", subject=subject, path=parent.manifest_path, key="product.commercial")
    return model


def _kept_garment(parent: _Parent, image: np.ndarray, garment: str, target: InstructionTarget) -> _Kept:
    """Whether the edit keeps the garment, why, and its mask: the output's ``product_mask``, narrowed to what the
    person wears when the kept subject is a person and the instruction is about the person."""
    recomposite = recomposite_garment(garment, target)
    kept = _Kept(recomposite, "the instruction targets the garment" if target.garment else "")
    if recomposite:
        rec = parent.record
        if rec.get("product_mask"):
            kept.alpha = _read_mask(parent.sku_dir / rec["product_mask"])
            kept.mask_source = "product-mask"
            if _subject_kind(parent.manifest, rec) == "person" and target.person:
                worn = _worn_on_output(image, kept.alpha, (parent.manifest.get("product") or {}).get("garment_type"))
                kept.alpha = np.where(worn > 0, kept.alpha, 0).astype(np.uint8)
                kept.mask_source = "worn-garment (the person's clothes: the instruction is about the person)"
        if kept.alpha is None or not (kept.alpha == 255).any():
            if garment == "keep":
                raise InputError(f"{parent.file!r} has no garment mask to keep", path=parent.manifest_path,
                                 key="garment")
            kept = _Kept(False, "the output has no garment mask")
    if garment == "release":
        kept.reason = "--garment release"
    elif garment == "keep":
        kept.reason = "--garment keep"
    elif kept.recomposite:
        kept.reason = "the instruction does not target the garment"
    return kept


def _run_kontext(editor: KontextEditor, image: np.ndarray, instruction: str, parent: _Parent, *, seed: int | None,
                 identity: IdentityPreset | None, params: EditParams) -> tuple[EditOutput, str, int]:
    """The Kontext edit with the identity's seed, prompt and reference face, at the output's exact size."""
    if identity is not None:
        seed = identity.seed
    elif seed is None:
        seed = int(parent.record.get("seed", 0) or 0)
    prompt = instruction.strip()
    reference = None
    if identity is not None:
        prompt += f" The model: {identity.prompt}."
        reference = identity.reference_image()
        if reference is not None:
            prompt += " Give the person on the left the face of the portrait on the right; show only the left image."
    result = editor(image, prompt, seed=seed, params=params, reference=reference)
    h, w = image.shape[:2]
    if result.image.shape != image.shape:
        raise VitrineError(f"the edit of {parent.file} came back {result.image.shape[1]}x{result.image.shape[0]}, "
                           f"not {w}x{h}")
    return result, prompt, int(seed)


def _recomposite(parent: _Parent, image: np.ndarray, result: EditOutput, kept: _Kept) -> tuple[np.ndarray,
                                                                                             Guarantee | None]:
    """The garment rule: the garment's pixels back from the parent (bit-identical inside the eroded mask), the seam
    band repaired; returns the new version and its guarantee (`None` when the garment is released)."""
    if not kept.recomposite:
        return result.image, None
    render = parent.render
    alpha = kept.alpha
    composite = alpha_composite(result.image, image, alpha)
    band = seam_band(alpha, int(render.get("seam_inner_px", 3)), int(render.get("seam_outer_px", 4)))
    final = inpaint_seam(composite, image, alpha, result.image, band)
    keep = preserve_mask(alpha, int(render.get("preserve_erode_px", 3)))
    if parent.record.get("preserve_mask"):
        keep = np.where(_read_mask(parent.sku_dir / parent.record["preserve_mask"]) > 0, keep, 0).astype(np.uint8)
    return final, Guarantee("garment-rule", reference=image, keep=keep, alpha=alpha, band=band, composite=composite)


def _edit_step(parent: _Parent, image: np.ndarray, editor: KontextEditor, instruction: str, kept: _Kept, *,
               seed: int | None, identity: IdentityPreset | None, params: EditParams,
               timings: dict[str, float]) -> _Edited:
    """The edit of one output: Kontext, the garment rule, the guarantee checked, the garment's fidelity."""
    t = time.perf_counter()
    result, prompt, seed = _run_kontext(editor, image, instruction, parent, seed=seed, identity=identity,
                                        params=params)
    timings["edit_s"] = round(time.perf_counter() - t, 4)
    t = time.perf_counter()
    final, guarantee = _recomposite(parent, image, result, kept)
    preserved = check_guarantee(final, guarantee, where=parent.file, file=parent.file) if guarantee else None
    h, w = image.shape[:2]
    gmask = np.where(_read_mask(parent.sku_dir / parent.record["product_mask"]) >= 128, 255, 0).astype(np.uint8) \
        if parent.record.get("product_mask") else np.zeros((h, w), np.uint8)
    fidelity = garment_fidelity(image, final, gmask)
    timings["composite_s"] = round(time.perf_counter() - t, 4)
    return _Edited(final, guarantee, preserved, fidelity, prompt, seed, result)


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
    manifest_path, manifest = _read_entry(catalog, sku, lock_timeout)
    done = _edit_for_decision(manifest, sku, decision_id)
    if done is not None:  # applied by a run that died before it recorded the result: not again
        logger.info("edit: %s/%s was already applied for decision %s (%s)", sku, output, decision_id, done.new_output)
        return done
    parent = _parent_output(catalog, sku, manifest_path, manifest, output, expected_sha256)
    model = _licensed_model(parent, editor, model, commercial)
    params = params or EditParams()
    product = manifest.get("product") or {}
    target = classify_instruction(instruction, extra_garment_words=product_garment_words(
        product.get("title"), ((product.get("spec") or {}).get("prompts") or {}).get("garment")))
    # 2. What to keep of the parent; 3. the edit; 4. the garment rule and its guarantee
    image = _read_rgb(parent.sku_dir / output)
    kept = _kept_garment(parent, image, garment, target)
    timings["prepare_s"] = round(time.perf_counter() - t0, 4)
    edited = _edit_step(parent, image, editor, instruction, kept, seed=seed, identity=identity, params=params,
                        timings=timings)
    # 5. Write under the SKU's lock: re-read, re-check, file(s) and manifest into staging, then commit
    lock = sku_lock(catalog, sku, lock_timeout)
    try:
        lock.acquire()
    except Timeout:
        raise EditConflictError(f"SKU {sku!r} stayed locked for {lock_timeout:.0f} s (a run is writing it)") from None
    try:
        result, new = _commit_edit(parent, edited, kept, target, instruction=instruction, model=model, params=params,
                              garment=garment, identity=identity, decision_id=decision_id, timings=timings)
    finally:
        lock.release()
    if new:
        logger.info("edit: %s/%s -> %s (%s)", sku, output, result.new_output, instruction)
    return result


def _commit_edit(parent: _Parent, edited: _Edited, kept: _Kept, target: InstructionTarget, *, instruction: str,
                 model: dict[str, Any], params: EditParams, garment: str, identity: IdentityPreset | None,
                 decision_id: str | None, timings: dict[str, float]) -> tuple[EditResult, bool]:
    """With the SKU's lock held: re-read the manifest, check the parent is unchanged, write the new version and its
    exports into a staging copy of the entry with the updated manifest, and commit it by rename. Returns the result
    and whether it is new (not an edit another run already made for the same decision)."""
    catalog, sku, output = parent.catalog, parent.sku, parent.file
    manifest = read_manifest(parent.manifest_path)
    done = _edit_for_decision(manifest, sku, decision_id)
    if done is not None:  # another run applied it while this one was editing
        return done, False
    current = {o["file"]: o for o in manifest.get("outputs", [])}.get(output)
    if current is None or current["sha256"] != parent.record["sha256"]:
        raise EditConflictError(f"{sku}/{output} was re-rendered or removed while the edit ran")
    root = (parent.record.get("edit") or {}).get("root") or output
    root_stem = Path(root).stem
    version = _next_version(manifest, parent.sku_dir, root_stem)
    new_file = f"{root_stem}.edit-{version}.png"
    staging = stage_entry_copy(catalog, sku)  # the next version is built here, then renamed into place
    try:
        writer = EntryWriter(staging, int(parent.render.get("png_compress_level", 1)))
        fields = {k: parent.record[k] for k in KEPT_KEYS if k in parent.record} if kept.recomposite else {}
        if kept.recomposite and kept.mask_source != "product-mask":  # a new, smaller kept mask: its own work files
            fields.update(writer.guarantee_masks(Path(new_file).stem, edited.guarantee))
        rec = output_record(
            new_file, "", "edit", (edited.final.shape[1], edited.final.shape[0]), seed=edited.seed,
            derived_from=output, **fields,
            quality={"size_preserved": True,
                     **preservation_quality(edited.preserved, int((edited.guarantee.band > 0).sum())
                                            if edited.guarantee is not None else 0),
                     "garment_fidelity_to_parent": edited.fidelity},
            edit=_edit_block(parent, edited, kept, target, instruction=instruction, model=model, params=params,
                             garment=garment, identity=identity, decision_id=decision_id, root=root,
                             version=version, timings=timings))
        exports = [export_record(f"{Path(new_file).stem}{'.jpg' if o['format'] == 'jpeg' else '.webp'}",
                                 o["format"], (rec["width"], rec["height"]), new_file, sha256="")
                   for o in manifest["outputs"] if o.get("kind") == "export" and o.get("derived_from") == output
                   and o.get("format") in ("jpeg", "webp")]
        new_outputs = [rec, *exports]
        probe = dict(manifest, outputs=[*manifest["outputs"], *[dict(r, sha256="0" * 64) for r in new_outputs]],
                     work=[*manifest.get("work", []), *writer.work])
        validate_manifest(probe, path=parent.manifest_path)  # before any image is written
        rec["sha256"] = writer.write_png(new_file, edited.final)
        quality_jpeg = int(parent.render.get("jpeg_quality", 92))
        for e in exports:
            e["sha256"] = writer.export(e["file"], edited.final, quality_jpeg)
        manifest["outputs"] = [*manifest["outputs"], *new_outputs]
        manifest["work"] = [*manifest.get("work", []), *writer.work]
        manifest["models"] = merge_model_records(manifest.get("models", []), [model])
        manifest["review"] = {**(manifest.get("review") or {}), "status": sku_review_status(manifest["outputs"]),
                              "counts": review_counts(manifest["outputs"])}
        write_manifest(staging, manifest)
        commit_entry(staging, catalog, sku)
        staging = None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return EditResult(sku=sku, parent=output, new_output=new_file, exports=[e["file"] for e in exports],
                      record=rec), True


def _edit_block(parent: _Parent, edited: _Edited, kept: _Kept, target: InstructionTarget, *, instruction: str,
                model: dict[str, Any], params: EditParams, garment: str, identity: IdentityPreset | None,
                decision_id: str | None, root: str, version: int, timings: dict[str, float]) -> dict[str, Any]:
    """The new version's ``edit`` record: what was asked, how, with which model, what was kept, its lineage."""
    return {
        "instruction": instruction.strip(),
        "prompt": edited.prompt,
        "model": model,
        "seed": edited.seed,
        "params": params.to_json(),
        "kontext": {k: v for k, v in edited.result.record.items() if k not in ("instruction", "params", "seed")},
        "garment": {"policy": garment, "recomposited": kept.recomposite, "reason": kept.reason,
                    "mask": kept.mask_source if kept.recomposite else None, **target.to_json()},
        "identity": identity.to_json() if identity is not None else None,
        "parent": parent.file,
        "parent_sha256": parent.record["sha256"],
        "root": root,
        "version": version,
        "decision_id": decision_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "timings": timings,
    }
