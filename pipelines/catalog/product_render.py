"""The product render step: a SKU's photos as a main image on pure white, lifestyle scenes and alternates.

Per photo: the subject (segmented, or the photo's alpha, or a painted override) with its quality checks and
controls; then per output the engine's placement, background and seam repair, the guarantee (product pixels
untouched, seam-only edits; `pipelines.catalog.guarantee`), the quality flags, and the exports (``main.jpg``,
marketplace mains, WebP). A marketplace whose rules the generic main does not meet gets its own main image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pipelines.catalog.guarantee import Guarantee
from pipelines.catalog.manifest import export_record, output_record, preservation_quality, subject_record
from pipelines.catalog.options import RenderOptions
from pipelines.catalog.steps import EntryParts, RenderJob, Timer, load_inputs
from pipelines.compositing.composite import fit_placement, preserve_mask, render_layer, seam_band
from pipelines.engines.bundle import OutputRequest
from pipelines.segmentation.subject import Subject
from pipelines.imageio import LoadedImage
from pipelines.marketplaces import check_rules, get_marketplace, rule_fill_range
from pipelines.product import Product
from pipelines.quality.checks import white_background_check
from pipelines.quality.flags import (
    DEFAULT_THRESHOLDS,
    apply_flags,
    backdrop_lightness,
    cutout_sanity,
    floor_contact,
    output_checks,
    refuse_upscale,
    upscale_factor,
)


class Plan(NamedTuple):
    """One output to render from a photo."""

    kind: str
    file: str
    background: str
    size: tuple[int, int]
    fill: float
    seed: int
    marketplace: str | None = None


@dataclass
class PhotoSubject:
    """One photo and what was found in it (the inputs of its outputs)."""

    path: Path
    img: LoadedImage
    stem: str
    subject: Subject
    controls: Any
    cutout_check: dict[str, Any]
    floor: dict[str, Any]
    backdrop_l: Any

    @property
    def touches_bottom(self) -> bool:
        return self.subject.bbox[3] >= self.img.rgb.shape[0] - 2


class ProductStep:
    """Product photos (see the module's docstring); the step every SKU that is not another kind takes."""

    name = "product"

    def accepts(self, product: Product) -> bool:
        return True

    def render(self, job: RenderJob) -> EntryParts:
        timer = Timer()
        product = job.product
        main_name = product.spec.main_image or product.images[0].name
        t = time.perf_counter()
        roles = {p.name: "main" if p.name == main_name else "alternate" for p in product.images}
        inputs, loaded, stems = load_inputs(job, product.images, roles)
        timer.add("load", t)
        outputs: list[dict[str, Any]] = []
        subjects: list[dict[str, Any]] = []
        quality: dict[str, Any] = {}
        for path in product.images:
            photo, subj_rec = _find_subject(job, path, loaded[path.name], stems[path.name], timer)
            subjects.append(subj_rec)
            plans = _plans(job, photo, is_main=path.name == main_name)
            for plan in plans:  # marketplace mains are appended as needed
                _render_output(job, photo, plan, plans, outputs, quality, timer)
        quality["all_preserved"] = all(
            o["quality"]["preserved_identical_fraction"] == 1.0 for o in outputs if "placement" in o
        )
        quality["flagged_outputs"] = [o["file"] for o in outputs if o.get("quality", {}).get("flags")]
        return EntryParts(inputs=inputs, subjects=subjects, outputs=outputs, quality=quality, parameters=job.params,
                          models=job.engine.models(), timings=timer.timings)


def _find_subject(job: RenderJob, path: Path, img: LoadedImage, stem: str,
                  timer: Timer) -> tuple[PhotoSubject, dict[str, Any]]:
    """Segment the subject (product on a plain background, or a person), honouring overrides; its quality checks
    and controls (pose skeleton for people, the garment's edge map). Returns it and its ``subjects[]`` record."""
    w = job.writer
    t = time.perf_counter()
    subject: Subject = job.engine.find_subject(img, job.product)
    timer.add("segment", t)
    rec = subject_record(path.name, subject.kind, subject, *w.subject_masks(stem, subject.alpha), subject.metrics)
    # Quality flags: the cutout against a second opinion; whether the subject stands on a floor.
    t = time.perf_counter()
    if subject.source.startswith("input-alpha") or "+override" in subject.source:
        # The photo's own alpha, or an analyst's painted mask: that is the truth, not a cutout to doubt.
        cutout_check = {"reference": "none", "skipped": f"the alpha comes from {subject.source}", "flags": []}
    else:
        cutout_check = cutout_sanity(img.rgb, subject.alpha, subject.kind)
    floor = floor_contact(subject.alpha, subject.kind, getattr(subject.pose, "keypoints", None))
    backdrop_l = backdrop_lightness(img.rgb)
    rec["quality"] = {"cutout": {k: v for k, v in cutout_check.items() if k != "flags"},
                      "cutout_flags": [f["flag"] for f in cutout_check["flags"]], "floor": floor,
                      "backdrop_lightness": backdrop_l}
    timer.add("flags", t)
    t = time.perf_counter()
    controls = job.engine.controls(img, subject)
    for cname, carr in controls.images.items():
        rec.setdefault("controls", {})[cname] = w.image(f"control-{cname}-{stem}.png", f"control-{cname}", carr)
    if controls.pose is not None:
        rec.setdefault("controls", {})["pose_json"] = w.json(f"pose-{stem}.json", "pose-keypoints", controls.pose)
    timer.add("controls", t)
    return PhotoSubject(path, img, stem, subject, controls, cutout_check, floor, backdrop_l), rec


def _plans(job: RenderJob, photo: PhotoSubject, *, is_main: bool) -> list[Plan]:
    """The outputs of a photo: the main image on pure white and the lifestyle scenes, or an alternate on white."""
    o, spec = job.options, job.product.spec
    square = (o.canvas, o.canvas)
    if not is_main:
        return [Plan("alternate", f"alt-{photo.stem}.png", "white", square, o.fill, 0)]
    plans = [Plan("main", "main.png", "white", square, o.fill, 0)]
    plans += [Plan("lifestyle", f"lifestyle-{bg}-s{seed}.png", bg, o.lifestyle_size, o.lifestyle_fill, seed)
              for bg in spec.backgrounds if bg != "white" for seed in spec.seeds]
    return plans


def _compose(job: RenderJob, photo: PhotoSubject, plan: Plan):
    """The engine's placement, background, composite and seam repair; returns (placement, final, guarantee)."""
    o = job.options
    if plan.kind != "lifestyle" or photo.touches_bottom:
        anchor = {"anchor": "floor", "margin_bottom": 0.0} if photo.touches_bottom else {}
    else:
        anchor = {"anchor": "floor", "margin_bottom": 0.07}
    request = OutputRequest(kind=plan.kind, file=plan.file, background=plan.background, size=plan.size,
                            seed=plan.seed, contact_shadow=(plan.kind == "lifestyle" and not photo.touches_bottom
                                                            and photo.floor["stands"]),
                            image=photo.img, subject=photo.subject, controls=photo.controls, product=job.product)
    placement = job.engine.place(request, fit_placement(photo.subject.bbox, plan.size, fill=plan.fill,
                                                                **anchor))
    refuse_upscale(upscale_factor(placement.to_json()), o.max_upscale, path=photo.path,
                   source_size=photo.img.source_size, output=plan.file, size=plan.size, cutout=photo.cutout_check)
    fg = render_layer(photo.img.rgb, placement)
    alpha = render_layer(photo.subject.alpha, placement, mode="L")
    band = seam_band(alpha, o.seam_inner_px, o.seam_outer_px)
    keep = preserve_mask(alpha, o.preserve_erode_px)
    # The engine's background (procedural or generated), composite, seam-band inpainting.
    composed = job.engine.compose(request, placement, fg, alpha, band)
    return placement, composed, Guarantee("placement", reference=fg, keep=keep, alpha=alpha, band=band,
                                          composite=composed.composite)


def _render_output(job: RenderJob, photo: PhotoSubject, plan: Plan, plans: list[Plan],
                   outputs: list[dict[str, Any]], quality: dict[str, Any], timer: Timer) -> None:
    """Render, check, write and flag one output (and its exports); appends to ``outputs`` (and ``plans``)."""
    w = job.writer
    t = time.perf_counter()
    placement, composed, guarantee = _compose(job, photo, plan)
    final = composed.final
    timer.add("compose", t)
    t = time.perf_counter()
    # The guarantee, checked before anything is written: product pixels untouched, seam-only edits.
    sha, preserved = w.output(plan.file, final, guarantee, where=photo.path)
    ostem = Path(plan.file).stem
    rec = output_record(
        plan.file, sha, plan.kind, plan.size, background=plan.background, seed=plan.seed,
        source_input=photo.path.name, placement=placement.to_json(), **w.guarantee_masks(ostem, guarantee),
        quality={**preservation_quality(preserved, int((guarantee.band > 0).sum())),
                 "fill": fill_ratio(guarantee.alpha)})
    if composed.record:
        rec["generation"] = dict(composed.record, work={
            wkind: (w.mask if wmask else w.image)(f"{ostem}.{wname}", wkind, warr)
            for wname, (wkind, warr, wmask) in composed.work.items()})
    if plan.background == "white":
        rec["quality"]["white_background"] = white_background_check(final, guarantee.alpha)
    # Quality flags (pipelines/quality/flags.py): a flagged output starts as needs-attention.
    tf = time.perf_counter()
    fill_range, fill_rule = fill_allowed(plan.kind, plan.fill, plan.marketplace, job.options)
    rec["quality"]["checks"] = output_checks(final, guarantee.alpha, placement.to_json(), photo.cutout_check,
                                             photo.floor, rec["quality"]["fill"], fill_range, fill_rule,
                                             backdrop_l=photo.backdrop_l)
    timer.add("flags", tf)
    t += time.perf_counter() - tf  # the write timing leaves the flags out
    if plan.marketplace is not None:
        rec["marketplace"] = plan.marketplace
    outputs.append(rec)
    if plan.kind == "main" and plan.marketplace is None:
        _main_exports(job, rec, final, plans, outputs, quality)
    elif plan.marketplace is not None:
        _marketplace_export(job, rec, final, plan.marketplace, outputs)
    if job.options.export_webp:
        webp = f"{ostem}.webp"
        outputs.append(export_record(webp, "webp", plan.size, plan.file,
                                     sha256=w.export(webp, final, job.options.jpeg_quality),
                                     background=plan.background))
    apply_flags(rec, outputs)
    timer.add("write", t)


def _main_exports(job: RenderJob, rec: dict[str, Any], final: np.ndarray, plans: list[Plan],
                  outputs: list[dict[str, Any]], quality: dict[str, Any]) -> None:
    """``main.jpg``, and the marketplaces: those whose rules the generic main meets share it; the others get their
    own main image, planned here (appended to ``plans``) and rendered by the caller's loop."""
    quality["main_white_background_ok"] = rec["quality"]["white_background"]["ok"]
    quality["main_fill"] = rec["quality"]["fill"]
    size = (rec["width"], rec["height"])
    outputs.append(export_record("main.jpg", "jpeg", size, rec["file"],
                                 sha256=job.writer.export("main.jpg", final, job.options.jpeg_quality),
                                 background="white"))
    for mp_key in job.product.spec.marketplaces:
        verdict = marketplace_verdict(mp_key, job.out, rec, outputs[-1])
        if verdict["ok"]:
            rec.setdefault("marketplace_rules", []).append(verdict)
        else:
            mp = get_marketplace(mp_key)
            plans.append(Plan("main", f"main-{mp_key}.png", "white", tuple(mp.render["size"]),
                              float(mp.render["fill"]), 0, mp_key))
            quality.setdefault("marketplace_outputs", {})[mp_key] = f"main-{mp_key}.png"


def _marketplace_export(job: RenderJob, rec: dict[str, Any], final: np.ndarray, market: str,
                        outputs: list[dict[str, Any]]) -> None:
    """A marketplace's own main: its export in the marketplace's format, and the verdict on its rules."""
    mp = get_marketplace(market)
    ext = {"jpeg": "jpg", "png": "png", "webp": "webp"}[mp.render["format"]]
    export = export_record(f"{Path(rec['file']).stem}.{ext}", mp.render["format"], (rec["width"], rec["height"]),
                           rec["file"], background="white", marketplace=market)
    if ext != "png":
        export["sha256"] = job.writer.export(export["file"], final, job.options.jpeg_quality)
        outputs.append(export)
    verdict = marketplace_verdict(market, job.out, rec, export if ext != "png" else rec)
    rec["marketplace_rules"] = [verdict]
    if not verdict["ok"]:
        failed = [k for k, v in verdict["rules"].items() if not v["ok"]]
        rec["quality"]["checks"]["marketplace"] = {"flags": [{
            "flag": "marketplace-rules", "message": f"{verdict['file']} fails {mp.name}'s "
            f"rules: {', '.join(failed)}", "value": float(len(failed)), "limit": 0.0}]}


def fill_allowed(kind: str, fill: float, market: str | None, options: RenderOptions) -> tuple[tuple[float, float], str]:
    """The fill range an output must meet, and whose rule: the marketplace's, else the requested fill +- 0.05
    for white-background images (lifestyle scenes have none)."""
    if market is not None:
        found = rule_fill_range(get_marketplace(market))
        if found is not None:
            return found, f"{market} rules"
    if kind == "lifestyle":  # a scene has no fill convention; a generative engine places the subject itself
        return (0.0, 1.0), "no fill rule for lifestyle scenes"
    tol = DEFAULT_THRESHOLDS.fill_tolerance
    return (max(0.0, fill - tol), min(1.0, fill + tol)), f"requested {kind} fill {fill:g} +- {tol:g}"


def marketplace_verdict(key: str, out: Path, rec: dict[str, Any], deliverable: dict[str, Any]) -> dict[str, Any]:
    """Check a deliverable (``main.jpg``, ``main-zalando.jpg``) of the placed output ``rec`` against ``key``'s rules.

    The generic main is delivered as its JPEG export when the marketplace takes JPEG, else as the PNG.
    """
    mp = get_marketplace(key)
    allowed = mp.rules.get("formats") or ["jpeg", "png"]
    if deliverable is not rec and deliverable["format"] not in allowed and rec["format"] in allowed:
        deliverable = rec
    verdict = check_rules(mp, width=rec["width"], height=rec["height"], fmt=deliverable["format"],
                          file_bytes=(out / deliverable["file"]).stat().st_size, fill=rec["quality"]["fill"],
                          white_background=(rec["quality"].get("white_background") or {}).get("ok"))
    return {"file": deliverable["file"], **verdict}


def fill_ratio(alpha: np.ndarray) -> float:
    """The subject's longer side over the canvas's (the ``fill`` of an output)."""
    ys, xs = np.nonzero(alpha >= 128)
    if len(xs) == 0:
        return 0.0
    h, w = alpha.shape
    return round(max((xs.max() - xs.min() + 1) / w, (ys.max() - ys.min() + 1) / h), 4)
