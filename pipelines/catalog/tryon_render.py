"""Try-on SKUs in the catalog: a product folder holding a person photo (``person.*``) and garment photos.

`pipelines.catalog.store._render` hands such a folder to `render_tryon`, which writes the SKU's staging folder
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
guarantee is checked before anything is written (`TryOnPipeline`), and again from the files by
`verify_tryon_output` (``vitrine verify``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.errors import InputError, VitrineError
from pipelines.imageio import atomic_write_json, load_image, save_image, save_mask, sha256_file
from pipelines.models.licence import merge_model_records
from pipelines.catalog.manifest import MANIFEST_NAME, build_manifest, write_manifest
from pipelines.segmentation.grounded_sam.segmenter import GroundedSamSegmenter
from pipelines.tryon.anchors import TRYON_TYPES
from pipelines.tryon.warp import GarmentTransform, apply_transform

if TYPE_CHECKING:
    from pipelines.catalog.store import RenderOptions
    from pipelines.engines.bundle import Engine
    from pipelines.product import Product

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
    from pipelines.masks import RefineOptions
    from pipelines.segmentation.prompts import resolve_prompt

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


def render_tryon(product: Product, out: Path, engine: Engine, options: RenderOptions, content_hash: str,
                 params: dict[str, Any]) -> dict[str, Any]:
    """Render a try-on SKU into the staging folder ``out``; returns the manifest written there.

    Args:
        product (`Product`): a try-on SKU (`is_tryon_product`).
        out (`Path`): the staging folder (with ``work/``), moved into place by `pipelines.catalog.store`.
        engine (`Engine`): the batch's engine (segmentation, pose; FLUX.1 Fill/Kontext with ``flux``).
        options (`RenderOptions`): erosion, seam band, PNG compression, input size limit.
        content_hash (`str`), params (`dict`): recorded in the manifest.

    Raises:
        `InputError`: bad roles, a garment type that cannot be tried on, nothing worn found, a garment
        photo that is not a product shot; `LicenceError`: a non-commercial method for a commercial SKU.
        `VitrineError`: a broken guarantee (nothing is written then).
    """
    from pipelines.catalog.store import _unique_stems
    from pipelines.controls.pose import PoseResult, get_pose_estimator
    from pipelines.segmentation.overrides import mask_override_path, read_override_mask
    from pipelines.engines.tryon import choose_tryon
    from pipelines.tryon.pipeline import TryOnParams
    from pipelines.tryon.worn import worn_garment_mask

    timings: dict[str, float] = {}
    t_total = time.perf_counter()
    spec = product.spec
    where = product.spec_path or product.dir
    person_path, garment_paths = tryon_roles(product)  # type: ignore[misc]
    garment_type = spec.garment_type or "upper"
    if garment_type not in TRYON_TYPES:
        raise InputError(f"garment type {garment_type!r} cannot be tried on; use one of {', '.join(TRYON_TYPES)}",
                         where, "garment_type")
    ts = spec.tryon  # its defaults when product.yaml has no tryon key
    work: list[dict[str, Any]] = []

    def save_work(name: str, kind: str, array: np.ndarray, *, mask: bool = False) -> str:
        rel = f"work/{name}"
        sha = save_mask(out / rel, array) if mask else save_image(out / rel, array,
                                                                   compress_level=options.png_compress_level)
        work.append({"file": rel, "kind": kind, "sha256": sha})
        return rel

    # 0. The method and its models: the licence guard refuses before any work is done
    t = time.perf_counter()
    subject = "the batch (--commercial)" if getattr(options, "commercial", False) else f"SKU {product.sku}"
    choice = choose_tryon(engine, ts.method, commercial=spec.commercial, where=where,
                          subject=subject)
    timings["models"] = round(time.perf_counter() - t, 4)

    # 1. Load and normalise the inputs
    t = time.perf_counter()
    stems = _unique_stems(product.images)
    inputs, loaded = [], {}
    for path in [person_path, *garment_paths]:
        img = load_image(path, max_side=options.max_input_side)
        loaded[path.name] = img
        inputs.append({
            "file": path.name, "sha256": sha256_file(path), "source_size": list(img.source_size),
            "size": [int(img.rgb.shape[1]), int(img.rgb.shape[0])], "source_mode": img.source_mode,
            "exif_rotated": img.exif_rotated, "icc_converted": img.icc_converted, "scale": img.scale,
            "has_alpha": img.alpha is not None,
            "normalized": save_work(f"input-{stems[path.name]}.png", "input-normalized", img.rgb),
            "role": "person" if path == person_path else "garment",
        })
    if product.spec_path is not None:
        inputs.append({"file": product.spec_path.name, "sha256": sha256_file(product.spec_path), "role": "spec"})
    timings["load"] = round(time.perf_counter() - t, 4)

    # 2. The person: alpha, pose, what they wear
    t = time.perf_counter()
    pimg = loaded[person_path.name]
    pstem = stems[person_path.name]
    psub = engine.find_subject(pimg, product)
    pose = psub.pose if isinstance(psub.pose, PoseResult) else get_pose_estimator()(pimg.rgb)
    ov_path = mask_override_path(product, person_path, "garment")
    override = read_override_mask(ov_path, pimg.source_size, pimg.size) if ov_path is not None else None
    worn, worn_rec = worn_garment_mask(pimg.rgb, psub.alpha, garment_type, pose=pose,
                                       segmenter=_segmenter(engine, product), override=override)
    if ov_path is not None:
        worn_rec["override"] = str(ov_path.relative_to(product.dir))
    subjects = [{
        "input": person_path.name, "kind": "person", "source": psub.source, "reason": psub.reason,
        "bbox": list(psub.bbox),
        "alpha": save_work(f"alpha-{pstem}.png", "alpha", psub.alpha, mask=True),
        "mask": save_work(f"mask-{pstem}.png", "mask", np.where(psub.alpha >= 128, 255, 0).astype(np.uint8),
                          mask=True),
        "metrics": {**psub.metrics, "detected_as": psub.kind},
        "worn": {**worn_rec, "mask": save_work(f"worn-{pstem}.png", "worn-garment-mask", worn, mask=True)},
    }]
    if pose.found:
        from pipelines.controls.pose import render_openpose

        pose_rel = f"work/pose-{pstem}.json"
        atomic_write_json(out / pose_rel, pose.to_json())
        work.append({"file": pose_rel, "kind": "pose-keypoints", "sha256": sha256_file(out / pose_rel)})
        subjects[0]["controls"] = {
            "pose_json": pose_rel,
            "openpose": save_work(f"control-openpose-{pstem}.png", "control-openpose", render_openpose(pose)),
        }
    garments = {}
    for gpath in garment_paths:
        gimg = loaded[gpath.name]
        gsub = engine.find_subject(gimg, product)
        if gsub.kind != "product":
            raise InputError("a garment photo must show the garment alone on a plain background (it looks like a "
                             "photo of a person)", gpath)
        gstem = stems[gpath.name]
        garments[gpath.name] = (gimg, gsub)
        subjects.append({
            "input": gpath.name, "kind": "product", "source": gsub.source, "reason": gsub.reason,
            "bbox": list(gsub.bbox), "alpha": save_work(f"alpha-{gstem}.png", "alpha", gsub.alpha, mask=True),
            "mask": save_work(f"mask-{gstem}.png", "mask", np.where(gsub.alpha >= 128, 255, 0).astype(np.uint8),
                              mask=True),
            "metrics": gsub.metrics,
        })
    timings["segment"] = round(time.perf_counter() - t, 4)

    # 3. Steps and sizes of the method
    settings = engine.generator.settings
    from pipelines.models.profiles import get_profile

    default_steps = {"fill": get_profile("black-forest-labs/FLUX.1-Fill-dev").steps,
                     "kontext": get_profile("black-forest-labs/FLUX.1-Kontext-dev").steps}.get(choice.method) or 28
    tparams = TryOnParams(
        erode_px=options.preserve_erode_px, seam_inner_px=options.seam_inner_px, seam_outer_px=options.seam_outer_px,
        garment_pixels=ts.garment_pixels,
        steps=(settings.steps if settings is not None and settings.steps else default_steps),
        work_side=settings.work_side if settings is not None else None,
    )

    # 4. One try-on per garment (and per seed for the generative methods)
    outputs: list[dict[str, Any]] = []
    seeds = list(spec.seeds) if choice.method != "warp" else [spec.seeds[0]]
    t_tryon = t_write = 0.0
    for gpath in garment_paths:
        gimg, gsub = garments[gpath.name]
        gstem = stems[gpath.name]
        for seed in seeds:
            t = time.perf_counter()
            with choice.run_lock:
                res = choice.pipeline(pimg.rgb, psub.alpha, gimg.rgb, gsub.alpha, worn_mask=worn,
                                      garment_type=garment_type, method=choice.method, pose=pose, seed=seed,
                                      garment_name=_garment_name(product, garment_type),
                                      prompt=ts.prompt, params=tparams)
            t_tryon += time.perf_counter() - t
            t = time.perf_counter()
            fname = f"tryon-{gstem}.png" if choice.method == "warp" else f"tryon-{gstem}-s{seed}.png"
            ostem = Path(fname).stem
            sha = save_image(out / fname, res.final, compress_level=options.png_compress_level)
            preserved = int((res.preserve > 0).sum())
            rec = {
                "file": fname, "sha256": sha, "kind": "tryon", "format": "png", "lossy": False,
                "width": int(res.final.shape[1]), "height": int(res.final.shape[0]), "seed": int(seed),
                "source_input": person_path.name, "garment_input": gpath.name,
                "garment_transform": res.transform.to_json(),
                "product_mask": save_work(f"{ostem}.product-mask.png", "product-mask", res.placed_alpha, mask=True),
                "preserve_mask": save_work(f"{ostem}.preserve-mask.png", "preserve-mask", res.preserve, mask=True),
                "seam_band": save_work(f"{ostem}.seam-band.png", "seam-band", res.band, mask=True),
                "tryon_region": save_work(f"{ostem}.region.png", "tryon-region", res.region, mask=True),
                "placed_garment": save_work(f"{ostem}.placed.png", "placed-garment", res.placed),
                "tryon": {**res.record, "method_reason": choice.reason, "models": choice.models},
                "quality": {
                    "preserved_pixels": preserved,
                    "preserved_identical_fraction": 1.0,
                    "seam_band_pixels": int((res.band > 0).sum()),
                    "garment_fidelity": res.record["fidelity"],
                    "model_garment_fidelity": res.record["model_fidelity"],
                },
                "review": {"status": "pending"},
            }
            rec["tryon"].pop("garment_transform", None)
            if res.generated is not None:
                rec["tryon"]["generated"] = save_work(f"{ostem}.generated.png", "tryon-generated", res.generated)
            outputs.append(rec)
            t_write += time.perf_counter() - t
    timings["tryon"] = round(t_tryon, 4)
    timings["write"] = round(t_write, 4)
    timings["total"] = round(time.perf_counter() - t_total, 4)

    # 5. The manifest
    manifest = build_manifest(
        product, content_hash,
        inputs=inputs,
        engine=engine.describe(),
        models=merge_model_records(engine.models(), choice.models),
        parameters={**params, "tryon": {"method": choice.method, "method_reason": choice.reason,
                                        "params": tparams.to_json(), "seeds": seeds}},
        subjects=subjects,
        work=work,
        outputs=outputs,
        quality={"all_preserved": True, "tryon_method": choice.method,
                 "min_garment_ssim": min((o["quality"]["garment_fidelity"]["ssim"] or 0.0) for o in outputs)},
        timings=timings,
    )
    write_manifest(out, manifest)
    return manifest


def verify_tryon_output(sku_dir: str | Path, manifest: dict[str, Any], output: dict[str, Any]) -> dict[str, Any]:
    """Re-check a try-on (or an edit of one) from its files: the garment photo through the recorded transform
    equals the output inside its preserve mask, and the output's sha256 matches the manifest.

    Returns:
        `dict`: ``file``, ``pixels``, ``identical``, ``identical_fraction``, ``max_abs_diff``, ``sha256_ok``, ``ok``.
    """
    from PIL import Image

    from pipelines.compositing.composite import check_preserved

    sku_dir = Path(sku_dir)
    by_name = {i["file"]: i for i in manifest["inputs"]}
    garment = by_name.get(output.get("garment_input", ""))
    if garment is None or "normalized" not in garment:
        raise VitrineError(f"{sku_dir / MANIFEST_NAME}: {output['file']} names no garment input")
    src = np.asarray(Image.open(sku_dir / garment["normalized"]).convert("RGB"))
    transform = GarmentTransform.from_json(output["garment_transform"])
    galpha = None
    if transform.warp is not None:  # the body warp layers the limbs by the garment's alpha (its work file)
        rel = next((s.get("alpha") for s in manifest.get("subjects", []) if s.get("input") == garment["file"]), None)
        if rel is None:
            raise VitrineError(f"{sku_dir / MANIFEST_NAME}: {output['file']} has a body warp but the garment "
                               f"{garment['file']} has no alpha in subjects[]")
        galpha = np.asarray(Image.open(sku_dir / rel).convert("L"))
    placed = apply_transform(src, transform, alpha=galpha)
    img = np.asarray(Image.open(sku_dir / output["file"]).convert("RGB"))
    keep = np.asarray(Image.open(sku_dir / output["preserve_mask"]).convert("L"))
    rec = {"file": output["file"], **check_preserved(img, placed, keep)}
    rec["sha256_ok"] = sha256_file(sku_dir / output["file"]) == output["sha256"]
    rec["ok"] = rec["identical_fraction"] == 1.0 and rec["sha256_ok"]
    return rec
