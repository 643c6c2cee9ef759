"""Virtual try-on onto a given person photo: three methods, one guarantee, one fidelity score.

`TryOnPipeline` dresses the person of a photo in the garment of a garment photo:

1. the garment is placed on the body by the pose (`pipelines.tryon.warp.place_garment`): the *garment as
   placed*, a recorded similarity transform of the garment photo;
2. the *region* the try-on may change is what the person wears now (`pipelines.tryon.worn`) united with
   the placed garment, grown by a few pixels; every pixel outside it is the person photo's, bit for bit;
3. the region is re-made by one of three methods:

   - ``fill`` (the CatVTON-Flux approach): the garment photo and the person photo side by side on one
     canvas, FLUX.1 Fill fills the region on the person's half, seeing the garment on the other half;
   - ``kontext``: FLUX.1 Kontext with the garment photo as a reference image to the right of the person
     (`pipelines.edit.kontext.KontextEditor`: preferred resolution, restored to the exact size);
   - ``warp`` (classic, no weights): the placed garment itself; the old clothes it does not cover are
     inpainted (OpenCV Telea, or an inpainting pipeline when one is given);

4. with ``garment_pixels="composite"`` (default) the garment as placed is alpha-composited over the
   result and only a narrow seam band around it is inpainted: inside the placed garment's eroded mask
   the output's pixels *are* the garment photo's (through the recorded transform), bit for bit. With
   ``"generated"`` the model's own rendering of the garment is kept (``fill``/``kontext`` only);
5. the garment fidelity is measured between the garment as placed and the output inside the garment mask
   (SSIM and CIEDE2000, `pipelines.tryon.fidelity`), and also between the garment as placed and the
   model's raw output (``model_fidelity``: how faithful the model alone is to the garment).

Models are passed in: tests pass tiny random pipelines, production the real ones
(`pipelines.engines.tryon`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image

from pipelines.compositing.seam import inpaint_seam
from pipelines.controls.pose import PoseResult
from pipelines.compositing.composite import alpha_composite, count_changed, dilate, preserve_mask, seam_band
from pipelines.edit.kontext import EditParams
from pipelines.errors import InputError, VitrineError
from pipelines.generation.loading import enable_offload_now, prepare_for_call
from pipelines.generation.oom import call_with_oom_fallback
from pipelines.generation.worksize import native_side, native_work_size, seam_crop, size_multiple, upscale_factor, work_size
from pipelines.tryon.bodywarp import back_neck_region, body_mask, garment_landmarks, in_front_mask, skin_colour, sleeve_mask
from pipelines.tryon.fidelity import garment_fidelity
from pipelines.tryon.warp import GarmentTransform, apply_transform, keypoint, place_garment

logger = logging.getLogger(__name__)

METHODS = ("fill", "kontext", "warp")
GARMENT_PIXELS = ("composite", "generated")
#: The CatVTON-Flux prompt (in-context fill): the garment on the left, the person on the right.
FILL_PROMPT = ("The pair of images highlights a clothing and its styling on a model, high resolution, 4K, 8K; "
               "[IMAGE1] Detailed product shot of a {garment}; [IMAGE2] The same {garment} is worn by a model "
               "in a lifestyle setting.")
KONTEXT_PROMPT = ("Dress the person on the left in the {garment} shown on the right. Keep the person's face, hair, "
                  "pose, body shape and the background exactly as they are.")
UNCOVERED_PROMPT = "a person, natural skin, arms and background, photo"


@dataclass(frozen=True)
class TryOnParams:
    """Parameters of one try-on (recorded in the manifest).

    Attributes:
        erode_px (`int`, *optional*, defaults to 3): the preserve mask is the placed garment's opaque
            alpha eroded by this many pixels.
        seam_inner_px (`int`, *optional*, defaults to 3): seam band reach into the garment (<= erode_px).
        seam_outer_px (`int`, *optional*, defaults to 4): seam band reach out of the garment.
        grow_px (`int`, *optional*): how far the region grows around the worn and placed garments;
            defaults to max(seam_outer_px + 2, 1.5% of the photo's longer side).
        garment_pixels (`str`, *optional*, defaults to ``"composite"``): ``composite`` or ``generated``
            (see the module docstring; ``warp`` always composites).
        steps (`int`, *optional*, defaults to 28): denoising steps of ``fill`` / ``kontext``.
        guidance (`float`, *optional*): guidance scale; defaults to 30 for ``fill`` and 2.5 for ``kontext``.
        max_sequence_length (`int`, *optional*, defaults to 512): T5 prompt length.
        work_side (`int`, *optional*): working resolution (side of a square of equal area per panel);
            defaults to the model's native side (1024 for FLUX.1).
        feather_px (`float`, *optional*, defaults to 2.0): the generated region fades in over this many
            pixels from the region's edge (inside the region only).
        body_warp (`bool`, *optional*, defaults to `True`): method ``warp`` only: bend the garment by the
            body (`pipelines.tryon.bodywarp`: thin-plate spline to the pose, arms and head kept in front,
            the back-neck label hidden, uncovered clothes filled with skin or background); `False`: the
            rigid similarity paste. Either way the result is labelled ``quality: preview``.
    """

    erode_px: int = 3
    seam_inner_px: int = 3
    seam_outer_px: int = 4
    grow_px: int | None = None
    garment_pixels: str = "composite"
    steps: int = 28
    guidance: float | None = None
    max_sequence_length: int | None = 512
    work_side: int | None = None
    feather_px: float = 2.0
    body_warp: bool = True

    def __post_init__(self) -> None:
        if self.seam_inner_px > self.erode_px:
            raise InputError(f"seam_inner_px ({self.seam_inner_px}) must not exceed erode_px ({self.erode_px})",
                             key="seam_inner_px")
        if self.garment_pixels not in GARMENT_PIXELS:
            raise InputError(f"garment_pixels must be one of {', '.join(GARMENT_PIXELS)}, got "
                             f"{self.garment_pixels!r}", key="garment_pixels")
        if not 1 <= self.steps <= 200:
            raise InputError(f"steps must be in [1, 200], got {self.steps}", key="steps")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TryOnOutput:
    """What `TryOnPipeline` returns (all arrays at the person photo's size).

    Attributes:
        final (`np.ndarray`): HxWx3 uint8, the try-on.
        placed (`np.ndarray`): HxWx3 uint8, the garment as placed (0 where it does not reach).
        placed_alpha (`np.ndarray`): HxW uint8, its alpha.
        preserve (`np.ndarray`): HxW uint8 0/255, where ``final`` equals ``placed`` bit for bit
            (empty with ``garment_pixels="generated"``).
        band (`np.ndarray`): HxW uint8 0/255, the seam band that was inpainted.
        region (`np.ndarray`): HxW uint8 0/255, the only pixels that differ from the person photo.
        worn (`np.ndarray`): HxW uint8 0/255, what the person wore.
        generated (`np.ndarray`, *optional*): HxWx3 uint8, the model's raw result pasted into the region
            (before the garment composite); `None` for ``warp``.
        transform (`GarmentTransform`): how the garment photo was placed.
        record (`dict`): method, parameters, fidelity, timings (for the manifest).
    """

    final: np.ndarray
    placed: np.ndarray
    placed_alpha: np.ndarray
    preserve: np.ndarray
    band: np.ndarray
    region: np.ndarray
    worn: np.ndarray
    generated: np.ndarray | None
    transform: GarmentTransform
    record: dict[str, Any] = field(default_factory=dict)


def _resize(a: np.ndarray, size: tuple[int, int], resample=Image.Resampling.LANCZOS) -> np.ndarray:
    if (a.shape[1], a.shape[0]) == tuple(size):
        return a.copy()
    return np.asarray(Image.fromarray(a).resize(tuple(size), resample))


def garment_panel(garment_rgb: np.ndarray, garment_alpha: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """The garment cut out on pure white, cropped to its box plus ``margin`` (share of the box), HxWx3 uint8."""
    white = np.full_like(garment_rgb, 255)
    comp = alpha_composite(white, garment_rgb, garment_alpha)
    ys, xs = np.nonzero(garment_alpha >= 128)
    if len(xs) == 0:
        raise InputError("the garment mask is empty", key="garment")
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    mx, my = int((x1 - x0) * margin), int((y1 - y0) * margin)
    h, w = garment_alpha.shape
    return np.ascontiguousarray(comp[max(0, y0 - my):min(h, y1 + my), max(0, x0 - mx):min(w, x1 + mx)])


def fit_on_white(panel: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``panel`` scaled to fit ``size`` (w, h) with its aspect kept, centred on white."""
    w, h = size
    ph, pw = panel.shape[:2]
    s = min(w / pw, h / ph)
    rw, rh = max(1, int(round(pw * s))), max(1, int(round(ph * s)))
    out = np.full((h, w, 3), 255, np.uint8)
    x0, y0 = (w - rw) // 2, (h - rh) // 2
    out[y0:y0 + rh, x0:x0 + rw] = _resize(panel, (rw, rh))
    return out


def paste_region(base: np.ndarray, generated: np.ndarray, region: np.ndarray, feather_px: float) -> np.ndarray:
    """``generated`` inside ``region`` (fading in over ``feather_px`` from its edge), ``base`` elsewhere.

    Bit-identical to ``base`` wherever ``region`` is 0.
    """
    inside = (region > 0).astype(np.uint8)
    if feather_px > 0:
        wts = np.clip(cv2.distanceTransform(inside, cv2.DIST_L2, 3) / float(feather_px), 0.0, 1.0) * inside
    else:
        wts = inside.astype(np.float32)
    mixed = np.round(generated.astype(np.float32) * wts[:, :, None] + base.astype(np.float32) * (1 - wts[:, :, None]))
    out = base.copy()
    sel = inside > 0
    out[sel] = np.clip(mixed, 0, 255).astype(np.uint8)[sel]
    return out


def _check_rgb(name: str, a: Any) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"{name} must be an HxWx3 uint8 RGB array, got {getattr(a, 'shape', type(a).__name__)}",
                         key=name)


def _check_mask(name: str, a: Any, shape: tuple[int, int]) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.shape != shape:
        raise InputError(f"{name} must be an HxW uint8 array of shape {shape}, got "
                         f"{getattr(a, 'shape', type(a).__name__)} {getattr(a, 'dtype', '')}", key=name)


def _run(pipe, kwargs: dict[str, Any], what: str) -> np.ndarray:
    """One diffusers call through Vitrine's device placement and out-of-memory fallback; hxwx3 uint8."""
    prepare_for_call(pipe)
    images = call_with_oom_fallback(pipe, kwargs, enable_offload=lambda: enable_offload_now(pipe), what=what)
    return np.clip(np.round(np.asarray(images[0], np.float32) * 255.0), 0, 255).astype(np.uint8)


def _accepted(pipe, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` without the arguments ``pipe.__call__`` does not take, and without `None` values (one call
    convention for FLUX Fill and SDXL inpainting: SDXL has no ``max_sequence_length``)."""
    import inspect

    params = inspect.signature(pipe.__call__).parameters
    return {k: v for k, v in kwargs.items() if v is not None and k in params}


def _generator(seed: int):
    import torch

    return torch.Generator("cpu").manual_seed(int(seed))


@dataclass(frozen=True)
class _Placing:
    """The garment placed on the person (step 2 of `TryOnPipeline.__call__`)."""

    transform: GarmentTransform
    placed: np.ndarray  # HxWx3 uint8, the garment photo through the transform
    alpha: np.ndarray  # HxW uint8, its alpha (the body warp's without the back-neck label and what is in front)
    front: np.ndarray | None  # HxW uint8 0/255, what stays in front of the garment (body warp only)
    warp_info: dict[str, Any]  # the body warp's record
    region: np.ndarray  # HxW uint8, the region the method re-makes


def _check_guarantees(final: np.ndarray, person_rgb: np.ndarray, placing: _Placing, keep: np.ndarray) -> None:
    """Outside the region the person photo, bit for bit; inside the preserve mask the garment as placed.

    Raises:
        `VitrineError`: either guarantee failed (a bug).
    """
    changed = count_changed(final, person_rgb, placing.region == 0)
    if changed:
        raise VitrineError(f"try-on changed {changed} pixels outside its region")
    if (keep > 0).any() and not np.array_equal(final[keep > 0], placing.placed[keep > 0]):
        raise VitrineError("try-on: the garment's pixels differ from the garment as placed in the preserve mask")


class TryOnPipeline:
    """Dress the person of a photo in a garment (see the module docstring).

    Args:
        fill (*optional*): a diffusers `FluxFillPipeline` (method ``fill``).
        kontext (`KontextEditor`, *optional*): a Kontext editor (method ``kontext``).
        inpaint (*optional*): an inpainting pipeline with the ``image``/``mask_image`` calling convention
            (`FluxFillPipeline`, `StableDiffusionXLInpaintPipeline`) for the old clothes the warped garment
            does not cover (method ``warp``); `None`: OpenCV's Telea inpainting.
    """

    def __init__(self, *, fill=None, kontext=None, inpaint=None):
        self.fill = fill
        self.kontext = kontext
        self.inpaint = inpaint

    def available_methods(self) -> list[str]:
        """The methods this pipeline can run (``warp`` always)."""
        return [m for m, ok in (("fill", self.fill is not None), ("kontext", self.kontext is not None),
                                ("warp", True)) if ok]

    # -- steps ----------------------------------------------------------------------------------------
    def check_inputs(self, person_rgb, person_alpha, garment_rgb, garment_alpha, worn_mask, method, seed):
        _check_rgb("person", person_rgb)
        _check_rgb("garment", garment_rgb)
        _check_mask("person_alpha", person_alpha, person_rgb.shape[:2])
        _check_mask("garment_alpha", garment_alpha, garment_rgb.shape[:2])
        _check_mask("worn_mask", worn_mask, person_rgb.shape[:2])
        if method not in METHODS:
            raise InputError(f"unknown try-on method {method!r}; expected one of {', '.join(METHODS)}",
                             key="tryon.method")
        if method not in self.available_methods():
            raise InputError(f"try-on method {method!r} needs its model, which was not given "
                             f"(available: {', '.join(self.available_methods())})", key="tryon.method")
        if not 0 <= int(seed) < 2**63:
            raise InputError(f"seed must be a non-negative integer, got {seed}", key="seed")

    def region_mask(self, worn: np.ndarray, placed_alpha: np.ndarray, params: TryOnParams) -> np.ndarray:
        """What the try-on may change: the worn clothes and the placed garment, grown by ``grow_px``."""
        h, w = worn.shape
        grow = params.grow_px if params.grow_px is not None else max(params.seam_outer_px + 2,
                                                                     int(round(0.015 * max(h, w))))
        grow = max(grow, params.seam_outer_px + 1)
        union = np.where((worn > 0) | (placed_alpha > 0), 255, 0).astype(np.uint8)
        return dilate(union, grow)

    def warp_base(self, person: np.ndarray, worn: np.ndarray, placed_alpha: np.ndarray, region: np.ndarray,
                  seed: int, params: TryOnParams, *, front: np.ndarray | None = None,
                  body: np.ndarray | None = None, skin: np.ndarray | None = None
                  ) -> tuple[np.ndarray, dict[str, Any]]:
        """The person with the old clothes the placed garment does not cover inpainted (method ``warp``).

        ``front`` (HxW uint8, optional): pixels in front of the garment (arms, hands, head), never
        changed. ``body`` (HxW uint8) and ``skin`` (RGB uint8), optional: the uncovered clothes over the
        body are filled with the skin colour (smoothed at its edges), the rest inpainted (Telea) from
        what surrounds it (the background).
        """
        covered = dilate(np.where(placed_alpha >= 128, 255, 0).astype(np.uint8), 1) > 0
        uncovered = np.where((worn > 0) & ~covered, 255, 0).astype(np.uint8)
        hole = (dilate(uncovered, 2) > 0) & (region > 0)
        if front is not None:
            hole &= front == 0
        info = {"uncovered_pixels": int(hole.sum())}
        if not hole.any():
            info["uncovered_inpainting"] = "none needed"
            return person.copy(), info
        hole_u8 = np.where(hole, 255, 0).astype(np.uint8)
        if self.inpaint is not None:
            filled = self.generative_inpaint(person, hole_u8, UNCOVERED_PROMPT, seed, params)
            info["uncovered_inpainting"] = type(self.inpaint).__name__
        else:
            radius = max(3, int(round(0.01 * max(person.shape[:2]))))
            # every old-clothes pixel is unknown to the inpainting (also those the garment will hide), so
            # their colour never bleeds into the fill
            unknown = hole_u8
            if front is not None:
                unknown = np.where(hole | ((dilate(worn, 2) > 0) & (region > 0) & (front == 0)), 255, 0
                                   ).astype(np.uint8)
            filled = cv2.inpaint(person, unknown, radius, cv2.INPAINT_TELEA)
            info["uncovered_inpainting"] = f"opencv-telea (radius {radius})"
            if body is not None and skin is not None:
                on_body = hole & (body > 0)
                if on_body.any():
                    flat = filled.copy()
                    flat[on_body] = skin
                    soft = cv2.GaussianBlur(flat, (0, 0), max(1.0, radius / 2))
                    filled[on_body] = soft[on_body]
                    info["uncovered_inpainting"] += f"; skin colour {[int(v) for v in skin]} over the body"
                    info["skin_filled_pixels"] = int(on_body.sum())
        out = person.copy()
        out[hole] = filled[hole]
        return out, info

    def body_layers(self, person_rgb: np.ndarray, person_alpha: np.ndarray, garment_alpha: np.ndarray,
                    worn: np.ndarray, garment_type: str, pose: PoseResult, transform: GarmentTransform
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """The body warp's alpha: the garment's alpha through the TPS without the back-neck label region,
        and without what is in front of the garment (arms, hands, head).

        Returns:
            `tuple`: (HxW uint8 placed alpha, HxW uint8 0/255 in-front mask, record).
        """
        marks = garment_landmarks(garment_alpha, garment_type)
        neck, neck_rec = back_neck_region(garment_alpha, garment_type, marks)
        shown = garment_alpha.copy()
        shown[neck > 0] = 0
        placed_alpha = apply_transform(shown, transform, alpha=garment_alpha)
        sleeves = apply_transform(sleeve_mask(garment_alpha, marks), transform, alpha=garment_alpha)
        long_sleeves = False
        for side in ("left", "right"):
            sh, el = keypoint(pose, f"{side}_shoulder"), keypoint(pose, f"{side}_elbow")
            if sh is not None and el is not None and garment_type != "lower":
                upper_arm = float(np.linalg.norm(el - sh))
                long_sleeves |= any(limb["length"] * transform.scale > 0.9 * upper_arm
                                    for limb in marks["limbs"].values())
        if garment_type == "lower":
            front = np.zeros_like(placed_alpha)
            front_rec: dict[str, Any] = {"pixels": 0, "parts": []}
        else:
            front, front_rec = in_front_mask(person_rgb, person_alpha, pose, worn, sleeves, long_sleeves=long_sleeves)
        hidden_front = int(((front > 0) & (placed_alpha > 0)).sum())
        placed_alpha[front > 0] = 0
        return placed_alpha, front, {
            "back_neck": neck_rec, "in_front": {**front_rec, "garment_pixels_hidden": hidden_front},
            "long_sleeves": bool(long_sleeves), "limbs": transform.warp.get("limbs", {}) if transform.warp else {}}

    def generative_inpaint(self, image: np.ndarray, mask: np.ndarray, prompt: str, seed: int,
                           params: TryOnParams) -> np.ndarray:
        """Inpaint ``mask`` of ``image`` with ``self.inpaint`` at its working size; returns full-size HxWx3."""
        pipe = self.inpaint
        h, w = mask.shape
        ws = work_size((w, h), params.work_side or native_side(pipe), size_multiple(pipe))
        mask_w = np.where(_resize(mask, ws, Image.Resampling.BOX) > 0, 255, 0).astype(np.uint8)
        kwargs = dict(prompt=prompt, image=Image.fromarray(_resize(image, ws)), mask_image=Image.fromarray(mask_w),
                      width=ws[0], height=ws[1], num_inference_steps=params.steps, strength=1.0,
                      guidance_scale=params.guidance if params.guidance is not None else 30.0,
                      max_sequence_length=params.max_sequence_length, generator=_generator(seed), output_type="np")
        return _resize(_run(pipe, _accepted(pipe, kwargs), "inpainting the uncovered clothes"), (w, h))

    def incontext_fill(self, person: np.ndarray, panel: np.ndarray, region: np.ndarray, prompt: str, seed: int,
                       params: TryOnParams) -> tuple[np.ndarray, dict[str, Any]]:
        """Method ``fill``: [garment | person] on one canvas, FLUX.1 Fill fills the region on the right half.

        Returns:
            `tuple`: (HxWx3 uint8 person-size result, record with the working sizes).
        """
        pipe = self.fill
        h, w = region.shape
        # Only the region around what changes goes on the canvas, at its own resolution (at most 1.2x up);
        # each panel is at least 3/4 of the native area (CatVTON-Flux: 768x1024 per panel), not a full megapixel.
        box = seam_crop(region)
        cx0, cy0, cx1, cy1 = box
        cw, ch = cx1 - cx0, cy1 - cy0
        if params.work_side:
            ws = work_size((cw, ch), params.work_side, size_multiple(pipe))
        else:
            ws = native_work_size((cw, ch), int(native_side(pipe) * math.sqrt(0.75)), size_multiple(pipe))
        person_w = _resize(np.ascontiguousarray(person[cy0:cy1, cx0:cx1]), ws)
        region_w = np.where(_resize(np.ascontiguousarray(region[cy0:cy1, cx0:cx1]), ws, Image.Resampling.BOX) > 0,
                            255, 0).astype(np.uint8)
        garment_w = fit_on_white(panel, ws)
        canvas = np.concatenate([garment_w, person_w], axis=1)
        mask = np.concatenate([np.zeros_like(region_w), region_w], axis=1)
        kwargs = dict(prompt=prompt, image=Image.fromarray(canvas), mask_image=Image.fromarray(mask),
                      height=ws[1], width=2 * ws[0], num_inference_steps=params.steps,
                      guidance_scale=params.guidance if params.guidance is not None else 30.0,
                      generator=_generator(seed), output_type="np")
        if params.max_sequence_length:
            kwargs["max_sequence_length"] = params.max_sequence_length
        out = _run(pipe, kwargs, "in-context try-on (FLUX.1 Fill)")
        right = np.ascontiguousarray(out[:, ws[0]:2 * ws[0]])
        full = person.copy()  # outside the crop: the person photo (the caller pastes the region only)
        full[cy0:cy1, cx0:cx1] = _resize(right, (cw, ch))
        return full, {"work_size": list(ws), "canvas_size": [2 * ws[0], ws[1]], "layout": "garment | person",
                      "crop": [int(v) for v in box], "upscale": upscale_factor((cw, ch), ws)}

    def kontext_reference(self, person: np.ndarray, panel: np.ndarray, prompt: str, seed: int,
                          params: TryOnParams) -> tuple[np.ndarray, dict[str, Any]]:
        """Method ``kontext``: Kontext edits the person with the garment photo as reference to its right."""
        ep = EditParams(steps=params.steps, guidance=params.guidance if params.guidance is not None else 2.5,
                        max_sequence_length=params.max_sequence_length, work_side=params.work_side)
        out = self.kontext(person, prompt, seed=seed, params=ep, reference=panel)
        return out.image, {**out.record, "layout": "person | garment"}

    # -- call -----------------------------------------------------------------------------------------
    def __call__(
        self,
        person_rgb: np.ndarray,
        person_alpha: np.ndarray,
        garment_rgb: np.ndarray,
        garment_alpha: np.ndarray,
        *,
        worn_mask: np.ndarray,
        garment_type: str = "upper",
        method: str = "warp",
        pose: PoseResult | None = None,
        seed: int = 0,
        garment_name: str = "garment",
        prompt: str | None = None,
        params: TryOnParams | None = None,
    ) -> TryOnOutput:
        """Dress the person in the garment.

        Args:
            person_rgb (`np.ndarray`): HxWx3 uint8 RGB, the person photo (the output has its size).
            person_alpha (`np.ndarray`): HxW uint8, the person's alpha (255 = person).
            garment_rgb (`np.ndarray`): hxwx3 uint8 RGB, the garment photo.
            garment_alpha (`np.ndarray`): hxw uint8, the garment's alpha in its photo.
            worn_mask (`np.ndarray`): HxW uint8, what the person wears now (`pipelines.tryon.worn`).
            garment_type (`str`, *optional*, defaults to ``"upper"``): ``upper``, ``outerwear``, ``dress``,
                ``lower``.
            method (`str`, *optional*, defaults to ``"warp"``): ``fill``, ``kontext`` or ``warp``.
            pose (`PoseResult`, *optional*): the person's keypoints (places the garment).
            seed (`int`, *optional*, defaults to 0): seeds the generative methods.
            garment_name (`str`, *optional*): what the garment is, in the prompt (``"navy t-shirt"``).
            prompt (`str`, *optional*): extra words appended to the method's prompt.
            params (`TryOnParams`, *optional*): defaults to `TryOnParams()`.

        Returns:
            `TryOnOutput`.

        Raises:
            `InputError`: bad arrays, an unavailable method, a garment that cannot be placed.
            `VitrineError`: the guarantees failed (a bug): pixels outside the region changed, or the
            garment's pixels are not the placed garment's inside the preserve mask.
        """
        params = params or TryOnParams()
        timings: dict[str, float] = {}
        # 1. Check inputs
        self.check_inputs(person_rgb, person_alpha, garment_rgb, garment_alpha, worn_mask, method, seed)
        garment_pixels = "composite" if method == "warp" else params.garment_pixels

        # 2. Place the garment on the body
        t = time.perf_counter()
        placing = self.place(person_rgb, person_alpha, garment_rgb, garment_alpha, worn_mask, garment_type,
                             method, pose, params)
        timings["place_s"] = round(time.perf_counter() - t, 4)

        # 3. Re-make the region with the method
        t = time.perf_counter()
        base, generated, text, info = self.remake_region(person_rgb, person_alpha, garment_rgb, garment_alpha,
                                                         worn_mask, method, pose, seed, garment_name, prompt,
                                                         params, placing)
        timings["method_s"] = round(time.perf_counter() - t, 4)

        # 4. The garment as placed over it, then only the seam band inpainted
        t = time.perf_counter()
        final, band, keep = self.composite_garment(base, placing, garment_pixels, params)
        timings["composite_s"] = round(time.perf_counter() - t, 4)

        # 5. The guarantees, checked here: outside the region the person photo; inside the preserve mask
        # the garment as placed.
        _check_guarantees(final, person_rgb, placing, keep)

        # 6. Garment fidelity: output vs the garment as placed, inside the garment mask
        hard = np.where(placing.alpha >= 128, 255, 0).astype(np.uint8)
        record = {
            "method": method,
            # the weight-free warp is a preview of the look, not a photographic try-on (docs/tryon-and-edits.md)
            "quality": "preview" if method == "warp" else "model",
            "garment_type": garment_type,
            "garment_pixels": garment_pixels,
            "seed": int(seed),
            "prompt": text,
            "params": params.to_json(),
            "garment_transform": placing.transform.to_json(),
            "region_pixels": int((placing.region > 0).sum()),
            "preserved_pixels": int((keep > 0).sum()),
            "seam_band_pixels": int((band > 0).sum()),
            "fidelity": garment_fidelity(placing.placed, final, hard),
            "model_fidelity": garment_fidelity(placing.placed, generated, hard) if generated is not None else None,
            "method_details": info,
            "timings": timings,
        }
        return TryOnOutput(final=final, placed=placing.placed, placed_alpha=placing.alpha, preserve=keep, band=band,
                           region=placing.region, worn=worn_mask, generated=generated, transform=placing.transform,
                           record=record)

    # -- the steps of a call --------------------------------------------------------------------------
    def place(self, person_rgb: np.ndarray, person_alpha: np.ndarray, garment_rgb: np.ndarray,
              garment_alpha: np.ndarray, worn_mask: np.ndarray, garment_type: str, method: str,
              pose: PoseResult | None, params: TryOnParams) -> _Placing:
        """Step 2: the garment placed on the body (rigid, or the body warp for ``warp`` with a pose), its
        alpha, what is in front of it, and the region the method re-makes.

        Raises:
            `InputError`: the placed garment lands outside the person photo.
        """
        h, w = person_alpha.shape
        body_warp = method == "warp" and params.body_warp and pose is not None
        transform = place_garment(garment_alpha, (w, h), garment_type, pose=pose, worn_mask=worn_mask,
                                  body_warp=body_warp)
        placed = apply_transform(garment_rgb, transform, alpha=garment_alpha)
        front = None
        warp_info: dict[str, Any] = {}
        if transform.warp is not None:
            placed_alpha, front, warp_info = self.body_layers(person_rgb, person_alpha, garment_alpha, worn_mask,
                                                              garment_type, pose, transform)
        else:
            placed_alpha = apply_transform(garment_alpha, transform)
        if not (placed_alpha >= 128).any():
            raise InputError("the garment lands outside the person photo", key="pose")
        region = self.region_mask(worn_mask, placed_alpha, params)
        return _Placing(transform, placed, placed_alpha, front, warp_info, region)

    def remake_region(self, person_rgb: np.ndarray, person_alpha: np.ndarray, garment_rgb: np.ndarray,
                      garment_alpha: np.ndarray, worn_mask: np.ndarray, method: str, pose: PoseResult | None,
                      seed: int, garment_name: str, prompt: str | None, params: TryOnParams, placing: _Placing
                      ) -> tuple[np.ndarray, np.ndarray | None, str | None, dict[str, Any]]:
        """Step 3: the person photo with the region re-made by ``method``.

        Returns:
            `tuple`: (HxWx3 uint8 base image, the model's output pasted in the region or `None` for
            ``warp``, the prompt or `None` for ``warp``, the method's record).
        """
        h, w = person_alpha.shape
        text = f"{FILL_PROMPT if method == 'fill' else KONTEXT_PROMPT}".format(garment=garment_name)
        if prompt:
            text += f" {prompt.strip()}"
        if method == "warp":
            body = skin = None
            if placing.transform.warp is not None:
                body = body_mask(pose, (w, h))
                skin = skin_colour(person_rgb, person_alpha, pose, worn_mask)
            base, info = self.warp_base(person_rgb, worn_mask, placing.alpha, placing.region, seed, params,
                                        front=placing.front, body=body, skin=skin)
            info = {**info, "garment_warp": "thin-plate spline by the pose" if placing.transform.warp is not None
                    else "rigid similarity", **placing.warp_info}
            return base, None, None, info
        panel = garment_panel(garment_rgb, garment_alpha)
        if method == "fill":
            raw, info = self.incontext_fill(person_rgb, panel, placing.region, text, seed, params)
        else:
            raw, info = self.kontext_reference(person_rgb, panel, text, seed, params)
        base = paste_region(person_rgb, raw, placing.region, params.feather_px)
        return base, base, text, info

    def composite_garment(self, base: np.ndarray, placing: _Placing, garment_pixels: str, params: TryOnParams
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step 4: with ``garment_pixels="composite"``, the garment as placed over ``base`` and only the seam
        band inpainted; else ``base`` as it is.

        Returns:
            `tuple`: (HxWx3 uint8 final image, HxW uint8 seam band, HxW uint8 preserve mask).
        """
        if garment_pixels != "composite":
            empty = np.zeros(base.shape[:2], np.uint8)
            return base, empty, empty
        placed, placed_alpha, front = placing.placed, placing.alpha, placing.front
        composite = alpha_composite(base, placed, placed_alpha)
        band = np.where((seam_band(placed_alpha, params.seam_inner_px, params.seam_outer_px) > 0)
                        & (placing.region > 0) & (front == 0 if front is not None else True), 255, 0).astype(np.uint8)
        final = inpaint_seam(composite, placed, placed_alpha, base, band)
        return final, band, preserve_mask(placed_alpha, params.erode_px)
