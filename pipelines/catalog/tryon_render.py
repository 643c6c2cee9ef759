"""Try-on SKUs in the catalog: a product folder holding a person photo (``person.*``) and garment photos.

`TryOnStep` is the render step of such a folder (`pipelines.catalog.steps`): it writes the SKU's staging folder
like any other SKU (normalised inputs, masks, pose, outputs, manifest) with one ``tryon`` output per garment
photo (and per seed, for the generative methods)::

    CATALOG/<sku>/
      tryon-<garment stem>.png            # warp (deterministic)
      tryon-<garment stem>-s<seed>.png    # fill / kontext
      work/input-person.png, input-<garment>.png, alpha-*.png, mask-*.png, pose-person.json,
           control-openpose-person.png, worn-person.png,
           tryon-<...>.product-mask.png (the garment as placed: its alpha), .preserve-mask.png,
           .seam-band.png, .region.png, .placed.png (the garment as placed)
      manifest.json

Each output's manifest entry has kind ``tryon``, ``source_input`` (the person photo), ``garment_input``, the
``garment_transform`` that places the garment photo, its masks, and ``tryon``: the method, why it was
chosen, its models with their licences, prompt, seed, parameters and the garment-fidelity scores. The
guarantee is checked before anything is written (`TryOnPipeline`, and the catalog's own check,
`pipelines.catalog.guarantee`), and again from the files by `pipelines.catalog.verify` (``vitrine verify``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.catalog.guarantee import Guarantee
from pipelines.catalog.manifest import output_record, preservation_quality, subject_record
from pipelines.catalog.steps import EntryParts, RenderJob, Timer, load_inputs
from pipelines.controls.pose import PoseResult, get_pose_estimator, render_openpose
from pipelines.segmentation.overrides import mask_override_path, read_override_mask
from pipelines.errors import InputError
from pipelines.imageio import LoadedImage
from pipelines.masks import RefineOptions
from pipelines.models.licence import merge_model_records
from pipelines.models.profiles import get_profile
from pipelines.product import Product
from pipelines.segmentation.grounded_sam.segmenter import GroundedSamSegmenter
from pipelines.segmentation.prompts import resolve_prompt
from pipelines.engines.tryon import TryOnChoice, choose_tryon
from pipelines.tryon.pipeline import TryOnOutput, TryOnParams
from pipelines.tryon.anchors import TRYON_TYPES
from pipelines.tryon.worn import worn_garment_mask

PERSON_STEM = "person"


def tryon_roles(product: Product) -> tuple[Path, list[Path]] | None:
    """(person photo, garment photos) of a try-on SKU, or `None` for an ordinary SKU.

    A SKU is a try-on SKU when ``product.yaml`` has a ``tryon`` key, or when it holds an image named
    ``person.*`` (any case) and at least one other image.

    Raises:
        `InputError`: ``tryon.person`` / ``tryon.garments`` name files that are not images of the folder, or a
            ``tryon`` key without a person photo or without a garment photo.
    """
    spec = product.spec
    ts = spec.tryon if "tryon" in spec.model_fields_set else None  # the key given in product.yaml
    where = product.spec_path or product.dir
    by_name = {p.name: p for p in product.images}
    if ts is not None and ts.person is not None:
        if ts.person not in by_name:
            raise InputError(f"person photo {ts.person!r} is not one of the images ({', '.join(by_name)})", where,
                             "tryon.person")
        person = by_name[ts.person]
    else:
        people = [p for p in product.images if p.stem.casefold() == PERSON_STEM]
        if len(people) > 1:
            raise InputError(f"several person photos ({', '.join(p.name for p in people)}); name one in "
                             "product.yaml tryon.person", where, "tryon.person")
        person = people[0] if people else None
    if person is None:
        if ts is not None:
            raise InputError("a try-on SKU needs a person photo named person.jpg/png/webp (or tryon.person)", where,
                             "tryon.person")
        return None
    if ts is not None and ts.garments is not None:
        missing = [g for g in ts.garments if g not in by_name or by_name[g] == person]
        if missing:
            raise InputError(f"garment photo(s) {', '.join(missing)} not among the images "
                             f"({', '.join(n for n in by_name if by_name[n] != person)})", where, "tryon.garments")
        garments = [by_name[g] for g in dict.fromkeys(ts.garments)]
    else:
        garments = [p for p in product.images if p != person]
    if not garments:
        if ts is None:
            return None  # a lone person photo is an ordinary on-model SKU
        raise InputError("a try-on SKU needs at least one garment photo besides the person photo", where, "tryon")
    return person, garments


def is_tryon_product(product: Product) -> bool:
    """Whether ``product`` is a try-on SKU (see `tryon_roles`)."""
    return tryon_roles(product) is not None


def _segmenter(engine, product: Product):
    """grounded-sam with the garment preset, when the engine segments with it and generates nothing (the
    ``grounded-sam`` engine); else `None` (the pose region)."""
    segmenter = engine.segmenter
    if not isinstance(segmenter, GroundedSamSegmenter) or engine.generator.kind != "classic":
        return None

    def segment(rgb: np.ndarray, garment_type: str) -> np.ndarray:
        spec = product.spec if product.spec.garment_type else product.spec.model_copy(
            update={"garment_type": garment_type})
        r = resolve_prompt(spec, "garment")
        out = segmenter.pipeline()(rgb, list(r.phrases), box_threshold=r.box_threshold,
                                text_threshold=r.text_threshold, mask_threshold=r.mask_threshold, policy=r.policy,
                                refine=RefineOptions(edges="hard"))
        return out.mask

    return segment


def _garment_name(product: Product, garment_type: str) -> str:
    p = product.spec.prompts
    return p.garment or product.spec.title or {"upper": "top", "outerwear": "jacket", "dress": "dress",
                                               "lower": "trousers"}[garment_type]


@dataclass
class _Person:
    """The person photo of a try-on SKU and what they wear."""

    path: Path
    img: LoadedImage
    subject: Any
    pose: PoseResult
    worn: np.ndarray


class TryOnStep:
    """Try-on SKUs (see the module's docstring): one ``tryon`` output per garment photo (and seed)."""

    name = "tryon"

    def accepts(self, product: Product) -> bool:
        return is_tryon_product(product)

    def render(self, job: RenderJob) -> EntryParts:
        """Render a try-on SKU through ``job.writer``.

        Raises:
            `InputError`: bad roles, a garment type that cannot be tried on, nothing worn found, a garment
            photo that is not a product shot; `LicenceError`: a non-commercial method for a commercial SKU.
            `VitrineError`: a broken guarantee (nothing is written then).
        """
        timer = Timer()
        product, spec = job.product, job.product.spec
        where = product.spec_path or product.dir
        person_path, garment_paths = tryon_roles(product)  # type: ignore[misc]
        garment_type = spec.garment_type or "upper"
        if garment_type not in TRYON_TYPES:
            raise InputError(f"garment type {garment_type!r} cannot be tried on; use one of "
                             f"{', '.join(TRYON_TYPES)}", where, "garment_type")
        # 0. The method and its models: the licence guard refuses before any work is done
        t = time.perf_counter()
        subject = "the batch (--commercial)" if getattr(job.options, "commercial", False) else f"SKU {product.sku}"
        choice = choose_tryon(job.engine, spec.tryon.method, commercial=spec.commercial, where=where,
                              subject=subject)
        timer.add("models", t)
        # 1. Load and normalise the inputs
        t = time.perf_counter()
        roles = {p.name: "person" if p == person_path else "garment" for p in [person_path, *garment_paths]}
        inputs, loaded, stems = load_inputs(job, [person_path, *garment_paths], roles)
        timer.add("load", t)
        # 2. The person (alpha, pose, what they wear) and the garments
        t = time.perf_counter()
        person, subjects = _person(job, person_path, loaded[person_path.name], stems[person_path.name],
                                   garment_type)
        garments = {}
        for gpath in garment_paths:
            garments[gpath.name], rec = _garment(job, gpath, loaded[gpath.name], stems[gpath.name])
            subjects.append(rec)
        timer.add("segment", t)
        # 3. One try-on per garment (and per seed for the generative methods)
        tparams = _tryon_params(job, choice)
        seeds = list(spec.seeds) if choice.method != "warp" else [spec.seeds[0]]
        outputs: list[dict[str, Any]] = []
        for gpath in garment_paths:
            for seed in seeds:
                outputs.append(_tryon_output(job, choice, tparams, person, gpath, garments[gpath.name],
                                             stems[gpath.name], garment_type, seed, timer))
        timer.timings.setdefault("tryon", 0.0)
        timer.timings.setdefault("write", 0.0)
        return EntryParts(
            inputs=inputs, subjects=subjects, outputs=outputs,
            quality={"all_preserved": True, "tryon_method": choice.method,
                     "min_garment_ssim": min((o["quality"]["garment_fidelity"]["ssim"] or 0.0) for o in outputs)},
            parameters={**job.params, "tryon": {"method": choice.method, "method_reason": choice.reason,
                                                "params": tparams.to_json(), "seeds": seeds}},
            models=merge_model_records(job.engine.models(), choice.models), timings=timer.timings)


def _person(job: RenderJob, path: Path, img: LoadedImage, stem: str,
            garment_type: str) -> tuple[_Person, list[dict[str, Any]]]:
    """The person: alpha, pose, what they wear (honouring a painted garment mask); their ``subjects[]`` record."""
    w, product = job.writer, job.product
    psub = job.engine.find_subject(img, product)
    pose = psub.pose if isinstance(psub.pose, PoseResult) else get_pose_estimator()(img.rgb)
    ov_path = mask_override_path(product, path, "garment")
    override = read_override_mask(ov_path, img.source_size, img.size) if ov_path is not None else None
    worn, worn_rec = worn_garment_mask(img.rgb, psub.alpha, garment_type, pose=pose,
                                       segmenter=_segmenter(job.engine, product), override=override)
    if ov_path is not None:
        worn_rec["override"] = str(ov_path.relative_to(product.dir))
    rec = subject_record(path.name, "person", psub, *w.subject_masks(stem, psub.alpha),
                         {**psub.metrics, "detected_as": psub.kind})
    rec["worn"] = {**worn_rec, "mask": w.mask(f"worn-{stem}.png", "worn-garment-mask", worn)}
    if pose.found:
        pose_rel = w.json(f"pose-{stem}.json", "pose-keypoints", pose.to_json())
        rec["controls"] = {
            "pose_json": pose_rel,
            "openpose": w.image(f"control-openpose-{stem}.png", "control-openpose", render_openpose(pose)),
        }
    return _Person(path, img, psub, pose, worn), [rec]


def _garment(job: RenderJob, path: Path, img: LoadedImage, stem: str) -> tuple[tuple[LoadedImage, Any],
                                                                               dict[str, Any]]:
    """A garment photo's subject (it must be a product shot) and its ``subjects[]`` record."""
    gsub = job.engine.find_subject(img, job.product)
    if gsub.kind != "product":
        raise InputError("a garment photo must show the garment alone on a plain background (it looks like a "
                         "photo of a person)", path)
    return (img, gsub), subject_record(path.name, "product", gsub, *job.writer.subject_masks(stem, gsub.alpha),
                                       gsub.metrics)


def _tryon_params(job: RenderJob, choice: TryOnChoice) -> TryOnParams:
    """Steps and sizes of the method (the engine's settings, else the model's profile)."""
    o, settings = job.options, job.engine.generator.settings
    default_steps = {"fill": get_profile("black-forest-labs/FLUX.1-Fill-dev").steps,
                     "kontext": get_profile("black-forest-labs/FLUX.1-Kontext-dev").steps}.get(choice.method) or 28
    return TryOnParams(
        erode_px=o.preserve_erode_px, seam_inner_px=o.seam_inner_px, seam_outer_px=o.seam_outer_px,
        garment_pixels=job.product.spec.tryon.garment_pixels,
        steps=(settings.steps if settings is not None and settings.steps else default_steps),
        work_side=settings.work_side if settings is not None else None,
    )


def _tryon_output(job: RenderJob, choice: TryOnChoice, tparams: TryOnParams, person: _Person, gpath: Path,
                  garment: tuple[LoadedImage, Any], gstem: str, garment_type: str, seed: int,
                  timer: Timer) -> dict[str, Any]:
    """One try-on: the pipeline's result, checked and written; returns its ``outputs[]`` record."""
    gimg, gsub = garment
    t = time.perf_counter()
    with choice.run_lock:
        res: TryOnOutput = choice.pipeline(
            person.img.rgb, person.subject.alpha, gimg.rgb, gsub.alpha, worn_mask=person.worn,
            garment_type=garment_type, method=choice.method, pose=person.pose, seed=seed,
            garment_name=_garment_name(job.product, garment_type), prompt=job.product.spec.tryon.prompt,
            params=tparams)
    timer.add("tryon", t)
    t = time.perf_counter()
    w = job.writer
    fname = f"tryon-{gstem}.png" if choice.method == "warp" else f"tryon-{gstem}-s{seed}.png"
    ostem = Path(fname).stem
    guarantee = Guarantee("garment-transform", reference=res.placed, keep=res.preserve, alpha=res.placed_alpha,
                          band=res.band)
    sha, preserved = w.output(fname, res.final, guarantee, where=person.path)
    tryon = {**res.record, "method_reason": choice.reason, "models": choice.models}
    tryon.pop("garment_transform", None)
    rec = output_record(
        fname, sha, "tryon", (res.final.shape[1], res.final.shape[0]), seed=int(seed),
        source_input=person.path.name, garment_input=gpath.name, garment_transform=res.transform.to_json(),
        **w.guarantee_masks(ostem, guarantee),
        tryon_region=w.mask(f"{ostem}.region.png", "tryon-region", res.region),
        placed_garment=w.image(f"{ostem}.placed.png", "placed-garment", res.placed),
        tryon=tryon,
        quality={**preservation_quality(preserved, int((res.band > 0).sum())),
                 "garment_fidelity": res.record["fidelity"], "model_garment_fidelity": res.record["model_fidelity"]})
    if res.generated is not None:
        rec["tryon"]["generated"] = w.image(f"{ostem}.generated.png", "tryon-generated", res.generated)
    timer.add("write", t)
    return rec
