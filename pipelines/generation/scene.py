"""Generate a person or a scene around kept pixels, composite the kept pixels back, inpaint the seam band.

`GarmentScenePipeline` is the generative compose step of the ``flux`` and ``sdxl`` engines:

1. the kept subject (a garment placed on a pose template, a person, a product) is scaled to the
   working resolution: the output's own, down to `MAX_UPSCALE` (1.2x) smaller for outputs above the
   model's native area (`native_work_size`); everything outside it is the region to generate;
2. control images are drawn at that resolution: the OpenPose skeleton (template or the person's own
   pose) and the Canny edges of the kept subject, both given to a (multi/union) ControlNet;
3. an inpainting pipeline generates outside the subject mask (the subject's pixels condition it);
4. the result is resized to the output size (at most 1.2x up), a contact shadow is added if asked, and
   the *original* subject pixels are alpha-composited over it (bit-exact where alpha is 255);
5. the seam band is inpainted (FLUX Fill / SDXL inpainting / the base model) on a crop around the band
   at output resolution (`seam_crop`, again at most 1.2x up) and only the band's pixels are pasted back,
   feathered inside the band. Pixels outside the band are the composite's, bit for bit.

The manifest records the working sizes and upscale factors (``work_size``, ``upscale``, ``seam_crop``,
``seam_work_size``, ``seam_upscale``).

The components are passed in (any diffusers pipelines with the inpainting calling convention), so tests
run it on tiny random models and production on real ones.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image

from pipelines.compositing.backgrounds import apply_shadow, contact_shadow
from pipelines.controls.edges import canny_control
from pipelines.controls.pose import PoseResult, render_openpose
from pipelines.compositing.composite import alpha_composite
from pipelines.errors import InputError
from pipelines.generation.loading import enable_offload_now, prepare_for_call
from pipelines.generation.oom import call_with_oom_fallback
from pipelines.generation.worksize import native_side, native_work_size, seam_crop, size_multiple, upscale_factor, work_size

logger = logging.getLogger(__name__)

#: Mid-grey shown to the model where the subject is not (it is regenerated anyway).
NEUTRAL_GREY = 127


@dataclass(frozen=True)
class SceneParams:
    """Parameters of one `GarmentScenePipeline` call (all recorded in the manifest).

    Attributes:
        steps (`int`): denoising steps of scene generation.
        guidance (`float`): guidance scale of scene generation.
        strength (`float`, *optional*, defaults to 1.0): inpainting strength outside the subject, (0, 1].
        controlnet_scale (`dict[str, float]`): control type (``openpose``, ``canny``) -> conditioning scale.
        control_modes (`dict[str, int]`, *optional*): union ControlNet mode index per control type.
        max_sequence_length (`int`, *optional*): T5 prompt length (FLUX).
        timesteps (`tuple[int, ...]`, *optional*): explicit timesteps (few-step distills), where accepted.
        seam_steps (`int`, *optional*, defaults to 20): denoising steps of the seam inpainting.
        seam_guidance (`float`, *optional*, defaults to 7.0): guidance scale of the seam inpainting.
        seam_strength (`float`, *optional*, defaults to 0.85): strength of the seam inpainting, (0, 1].
        seam_max_sequence_length (`int`, *optional*): T5 prompt length of the seam model (FLUX).
        work_side (`int`, *optional*): working resolution as the side of a square of equal area;
            defaults to the generation model's native side (its VAE's ``sample_size``).
        feather_px (`float`, *optional*, defaults to 2.0): the pasted band fades in over this many
            pixels from the band's edge (inside the band only).
    """

    steps: int
    guidance: float
    strength: float = 1.0
    controlnet_scale: dict[str, float] = field(default_factory=lambda: {"openpose": 0.8, "canny": 0.6})
    control_modes: dict[str, int] | None = None
    max_sequence_length: int | None = None
    timesteps: tuple[int, ...] | None = None
    seam_steps: int = 20
    seam_guidance: float = 7.0
    seam_strength: float = 0.85
    seam_max_sequence_length: int | None = None
    work_side: int | None = None
    feather_px: float = 2.0

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class SceneOutput:
    """What `GarmentScenePipeline` returns.

    Attributes:
        final (`np.ndarray`): HxWx3 uint8, the composite with the seam band inpainted.
        composite (`np.ndarray`): HxWx3 uint8, the generated background (upscaled) with the subject
            alpha-composited over it, before seam inpainting.
        generated (`np.ndarray`): hxwx3 uint8, the raw generation at the working resolution.
        controls (`dict[str, np.ndarray]`): control images at the working resolution (hxwx3 uint8).
        generation_mask (`np.ndarray`): hxw uint8, 255 where the model generated.
        record (`dict`): every parameter, the working size and timings (for the manifest).
    """

    final: np.ndarray
    composite: np.ndarray
    generated: np.ndarray
    controls: dict[str, np.ndarray]
    generation_mask: np.ndarray
    record: dict[str, Any]


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(images, np.float32) * 255.0), 0, 255).astype(np.uint8)


def _resize(a: np.ndarray, size: tuple[int, int], resample=Image.Resampling.LANCZOS) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize(size, resample))


def feather_weights(band: np.ndarray, feather_px: float) -> np.ndarray:
    """HxW float32 weights in [0, 1]: 0 outside ``band``, rising to 1 ``feather_px`` inside its edge."""
    inside = (band > 0).astype(np.uint8)
    if feather_px <= 0:
        return inside.astype(np.float32)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    return np.clip(dist / float(feather_px), 0.0, 1.0).astype(np.float32) * inside


def paste_band(composite: np.ndarray, inpainted: np.ndarray, band: np.ndarray, feather_px: float = 2.0) -> np.ndarray:
    """Paste ``inpainted`` into ``composite`` inside ``band`` only.

    Args:
        composite (`np.ndarray`): HxWx3 uint8.
        inpainted (`np.ndarray`): HxWx3 uint8, same size.
        band (`np.ndarray`): HxW uint8, nonzero where pasting is allowed.
        feather_px (`float`, *optional*, defaults to 2.0): fade-in distance from the band's edge.

    Returns:
        `np.ndarray`: HxWx3 uint8, bit-identical to ``composite`` wherever ``band`` is 0.
    """
    if composite.shape != inpainted.shape or composite.shape[:2] != band.shape:
        raise InputError(f"paste_band shapes differ: {composite.shape}, {inpainted.shape}, {band.shape}")
    out = composite.copy()
    ys, xs = np.nonzero(band)
    if len(ys) == 0:
        return out
    # Work on the band's bounding box (plus a margin for the distance transform) and its pixels only.
    m = 1
    y0, y1 = max(0, ys.min() - m), min(band.shape[0], ys.max() + 1 + m)
    x0, x1 = max(0, xs.min() - m), min(band.shape[1], xs.max() + 1 + m)
    crop = band[y0:y1, x0:x1]
    sel = crop > 0
    w = feather_weights(crop, feather_px)[sel][:, None]
    a = inpainted[y0:y1, x0:x1][sel].astype(np.float32)
    b = composite[y0:y1, x0:x1][sel].astype(np.float32)
    out[y0:y1, x0:x1][sel] = np.clip(np.round(a * w + b * (1.0 - w)), 0, 255).astype(np.uint8)
    return out


def _accepts(pipe, name: str) -> bool:
    return name in inspect.signature(pipe.__call__).parameters


def _call_kwargs(pipe, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Drop arguments the pipeline does not take (or that are ``None``)."""
    params = inspect.signature(pipe.__call__).parameters
    return {k: v for k, v in kwargs.items() if v is not None and k in params}


def _generator(seed: int):
    import torch

    return torch.Generator("cpu").manual_seed(int(seed))


class GarmentScenePipeline:
    """Generate around kept pixels under pose + edge control, composite them back, inpaint the seam.

    Args:
        generator: a diffusers inpainting pipeline that generates where its mask is white:
            ``FluxControlNetInpaintPipeline`` / ``StableDiffusionXLControlNetInpaintPipeline`` (with a
            multi or union ControlNet), or ``FluxInpaintPipeline`` / ``StableDiffusionXLInpaintPipeline``
            without ControlNets.
        seam: a diffusers inpainting pipeline for the seam band (``FluxFillPipeline``,
            ``StableDiffusionXLInpaintPipeline``, ``FluxInpaintPipeline``); ``None``: the band is left as
            composited.
        family (`str`): ``flux`` or ``sdxl``.
        control_order (`tuple[str, ...]`, *optional*): control types in the order of the ControlNets of
            ``generator`` (for a multi-ControlNet of single models); empty for a union model or none.
        refiner (*optional*): an SDXL img2img pipeline run on the generated image (strength 0.3).
    """

    def __init__(self, generator, seam=None, *, family: str, control_order: tuple[str, ...] = (),
                 refiner=None, refiner_strength: float = 0.3):
        if family not in ("flux", "sdxl"):
            raise ValueError(f"family must be flux or sdxl, got {family!r}")
        self.generator = generator
        self.seam = seam
        self.family = family
        self.control_order = tuple(control_order)
        self.refiner = refiner
        self.refiner_strength = refiner_strength

    # -- steps ----------------------------------------------------------------------------------------
    def check_inputs(self, foreground: np.ndarray, alpha: np.ndarray, band: np.ndarray, seed: int) -> None:
        if foreground.ndim != 3 or foreground.shape[2] != 3 or foreground.dtype != np.uint8:
            raise InputError(f"foreground must be HxWx3 uint8, got {foreground.shape} {foreground.dtype}")
        if alpha.shape != foreground.shape[:2] or alpha.dtype != np.uint8:
            raise InputError(f"alpha must be HxW uint8 like the foreground, got {alpha.shape} {alpha.dtype}")
        if band.shape != alpha.shape:
            raise InputError(f"band must be HxW like the foreground, got {band.shape}")
        if not 0 <= int(seed) < 2**63:
            raise InputError(f"seed must be a non-negative integer, got {seed}", key="seed")

    def prepare_work(self, foreground: np.ndarray, alpha: np.ndarray, side: int | None):
        """Working size, the subject at that size over neutral grey, and the generation mask.

        Without ``side`` the working size keeps the output's resolution up to `MAX_UPSCALE`
        (`native_work_size`); with it, the area of ``side``² (``VITRINE_GEN_WORK_SIDE``)."""
        h, w = alpha.shape
        if side:
            ws = work_size((w, h), side, size_multiple(self.generator))
        else:
            ws = native_work_size((w, h), native_side(self.generator), size_multiple(self.generator))
        fg_w = _resize(foreground, ws)
        alpha_w = _resize(alpha, ws)
        keep_w = np.where(alpha_w >= 128, 255, 0).astype(np.uint8)
        grey = np.full_like(fg_w, NEUTRAL_GREY)
        canvas_w = alpha_composite(grey, fg_w, alpha_w)
        gen_mask = (255 - keep_w).astype(np.uint8)
        return ws, fg_w, keep_w, canvas_w, gen_mask

    def prepare_controls(self, ws: tuple[int, int], fg_w: np.ndarray, keep_w: np.ndarray,
                         pose: PoseResult | None) -> dict[str, np.ndarray]:
        """Control images at the working size: ``openpose`` (when a pose is given) and ``canny``."""
        controls: dict[str, np.ndarray] = {}
        if pose is not None and pose.found:
            controls["openpose"] = render_openpose(pose, size=ws)
        controls["canny"] = canny_control(fg_w, keep_w, boundary_width=1)
        return controls

    def control_kwargs(self, controls: dict[str, np.ndarray], params: SceneParams) -> dict[str, Any]:
        """The ControlNet arguments for the generator call (none without a ControlNet)."""
        if getattr(self.generator, "controlnet", None) is None:
            return {}
        ws = next(iter(controls.values())).shape[1::-1]
        if params.control_modes:  # one union ControlNet: any subset of controls, each with its mode
            names = [c for c in controls if c in params.control_modes]
            return {
                "control_image": [Image.fromarray(controls[c]) for c in names],
                "control_mode": [params.control_modes[c] for c in names],
                "controlnet_conditioning_scale": [params.controlnet_scale.get(c, 1.0) for c in names],
            }
        # one model per control: each gets its image, or a black one at scale 0 when there is none
        images, scales = [], []
        for c in self.control_order:
            if c in controls:
                images.append(Image.fromarray(controls[c]))
                scales.append(params.controlnet_scale.get(c, 1.0))
            else:
                images.append(Image.new("RGB", ws, 0))
                scales.append(0.0)
        wrapped = type(self.generator.controlnet).__name__ in ("FluxMultiControlNetModel", "MultiControlNetModel")
        if len(images) == 1 and not wrapped:  # one ControlNet used as it is (see loading.controlnet_component)
            return {"control_image": images[0], "controlnet_conditioning_scale": scales[0]}
        if self.family == "flux":  # several non-union FLUX ControlNets: diffusers needs one (empty) mode each
            return {"control_image": images, "controlnet_conditioning_scale": scales,
                    "control_mode": [None] * len(images)}
        return {"control_image": images, "controlnet_conditioning_scale": scales}

    def _run(self, pipe, kwargs: dict[str, Any], what: str) -> np.ndarray:
        prepare_for_call(pipe)
        images = call_with_oom_fallback(pipe, kwargs, enable_offload=lambda: enable_offload_now(pipe), what=what)
        return _to_uint8(images[0])

    def generation_kwargs(self, canvas_w, gen_mask, ws, controls, prompt, negative_prompt, seed,
                          params: SceneParams) -> dict[str, Any]:
        """The exact arguments of the generator call (filtered to what the pipeline takes)."""
        kwargs = dict(
            prompt=prompt, negative_prompt=negative_prompt if self.family == "sdxl" else None,
            image=Image.fromarray(canvas_w), mask_image=Image.fromarray(gen_mask), width=ws[0], height=ws[1],
            strength=params.strength, num_inference_steps=params.steps, guidance_scale=params.guidance,
            max_sequence_length=params.max_sequence_length, generator=_generator(seed), output_type="np",
            **self.control_kwargs(controls, params),
        )
        if params.timesteps and _accepts(self.generator, "timesteps"):
            kwargs["timesteps"] = list(params.timesteps)
            kwargs.pop("num_inference_steps")
        return _call_kwargs(self.generator, kwargs)

    def generate(self, canvas_w, gen_mask, ws, controls, prompt, negative_prompt, seed, params: SceneParams):
        kwargs = self.generation_kwargs(canvas_w, gen_mask, ws, controls, prompt, negative_prompt, seed, params)
        return self._run(self.generator, kwargs, "generating the scene")

    def refine(self, image_w, ws, prompt, negative_prompt, seed, params: SceneParams) -> np.ndarray:
        kwargs = dict(prompt=prompt, negative_prompt=negative_prompt, image=Image.fromarray(image_w),
                      strength=self.refiner_strength,  # at least one step of the strength's share
                      num_inference_steps=max(params.steps, math.ceil(1 / self.refiner_strength) + 1),
                      guidance_scale=params.guidance, generator=_generator(seed), output_type="np")
        out = self._run(self.refiner, _call_kwargs(self.refiner, kwargs), "refining the scene")
        return out if out.shape == image_w.shape else _resize(out, ws)

    def seam_work(self, band: np.ndarray, side: int | None) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
        """The seam's crop box (`seam_crop`, output pixels) and the working size it is inpainted at: the
        crop's own resolution up to `MAX_UPSCALE` (or the area of ``side``² when given)."""
        box = seam_crop(band)
        cw, ch = box[2] - box[0], box[3] - box[1]
        if side:
            return box, work_size((cw, ch), side, size_multiple(self.seam))
        return box, native_work_size((cw, ch), native_side(self.seam), size_multiple(self.seam))

    def seam_kwargs(self, composite, band, ws, prompt, negative_prompt, seed, params: SceneParams) -> dict[str, Any]:
        """The exact arguments of the seam call: the crop around the band (`seam_work`) of the composite
        and the (dilated) band, at the seam's working size (``ws`` is not used: kept for callers)."""
        box, sws = self.seam_work(band, params.work_side)
        x0, y0, x1, y1 = box
        image_w = _resize(np.ascontiguousarray(composite[y0:y1, x0:x1]), sws)
        band_c = np.ascontiguousarray(band[y0:y1, x0:x1])
        band_w = cv2.dilate(np.where(_resize(band_c, sws, Image.Resampling.BOX) > 0, 255, 0).astype(np.uint8),
                            np.ones((3, 3), np.uint8))
        ws = sws
        kwargs = dict(
            prompt=prompt, negative_prompt=negative_prompt if self.family == "sdxl" else None,
            image=Image.fromarray(image_w), mask_image=Image.fromarray(band_w), width=ws[0], height=ws[1],
            strength=params.seam_strength, num_inference_steps=params.seam_steps, guidance_scale=params.seam_guidance,
            max_sequence_length=params.seam_max_sequence_length, generator=_generator(seed), output_type="np",
        )
        return _call_kwargs(self.seam, kwargs)

    def inpaint_band(self, composite, band, ws, prompt, negative_prompt, seed, params: SceneParams) -> np.ndarray:
        """Inpaint the crop around the seam band; returns the output-size image: the composite with the
        crop replaced by the inpainted crop (only its band pixels are pasted by the caller)."""
        box, _ = self.seam_work(band, params.work_side)
        x0, y0, x1, y1 = box
        out = self._run(self.seam, self.seam_kwargs(composite, band, ws, prompt, negative_prompt, seed, params),
                        "inpainting the seam band")
        full = composite.copy()
        full[y0:y1, x0:x1] = out if out.shape[:2] == (y1 - y0, x1 - x0) else _resize(out, (x1 - x0, y1 - y0))
        return full

    # -- call -----------------------------------------------------------------------------------------
    def __call__(
        self,
        foreground: np.ndarray,
        alpha: np.ndarray,
        band: np.ndarray,
        *,
        prompt: str,
        params: SceneParams,
        seed: int = 0,
        negative_prompt: str | None = None,
        pose: PoseResult | None = None,
        shadow: bool = False,
    ) -> SceneOutput:
        """Generate a scene around the kept subject.

        Args:
            foreground (`np.ndarray`): HxWx3 uint8, the subject placed on the output canvas.
            alpha (`np.ndarray`): HxW uint8, its alpha (255 = kept pixel).
            band (`np.ndarray`): HxW uint8 0/255, the seam band (the only pixels the seam step may change).
            prompt (`str`): what to generate (person, clothes, scene).
            params (`SceneParams`): steps, guidance, control scales, seam parameters.
            seed (`int`, *optional*, defaults to 0): seeds the generation (and the seam, with the same seed).
            negative_prompt (`str`, *optional*): what to avoid (SDXL; FLUX has no CFG and ignores it).
            pose (`PoseResult`, *optional*): the skeleton to generate a person in, in output pixels.
            shadow (`bool`, *optional*, defaults to `False`): add a contact shadow under the subject.

        Returns:
            `SceneOutput`.
        """
        timings: dict[str, float] = {}
        # 1. Check inputs
        self.check_inputs(foreground, alpha, band, seed)
        h, w = alpha.shape

        # 2. Working size, subject over grey, the mask of what to generate
        ws, fg_w, keep_w, canvas_w, gen_mask = self.prepare_work(foreground, alpha, params.work_side)

        # 3. Control images: pose skeleton and the subject's edges
        pose_w = None
        if pose is not None:
            k = pose.keypoints.copy()
            k[:, 0] *= ws[0] / pose.width
            k[:, 1] *= ws[1] / pose.height
            pose_w = PoseResult(width=ws[0], height=ws[1], keypoints=k)
        controls = self.prepare_controls(ws, fg_w, keep_w, pose_w)

        # 4. Generate outside the subject (and refine, for SDXL with a refiner)
        t = time.perf_counter()
        generated = self.generate(canvas_w, gen_mask, ws, controls, prompt, negative_prompt, seed, params)
        if self.refiner is not None:
            generated = self.refine(generated, ws, prompt, negative_prompt, seed, params)
        timings["generate_s"] = round(time.perf_counter() - t, 4)

        # 5. Upscale, contact shadow, composite the original subject pixels back
        background = _resize(generated, (w, h))
        if shadow:
            background = apply_shadow(background, contact_shadow(np.where(alpha >= 128, 255, 0).astype(np.uint8)))
        composite = alpha_composite(background, foreground, alpha)

        # 6. Inpaint the seam band and paste back only the band
        t = time.perf_counter()
        final = composite
        if self.seam is not None and (band > 0).any():
            inpainted = self.inpaint_band(composite, band, ws, prompt, negative_prompt, seed, params)
            final = paste_band(composite, inpainted, band, params.feather_px)
        timings["seam_s"] = round(time.perf_counter() - t, 4)

        # 7. Record
        seam_box, seam_ws = self.seam_work(band, params.work_side) if self.seam is not None else (None, None)
        record = {
            "prompt": prompt,
            "negative_prompt": negative_prompt if self.family == "sdxl" else None,
            "seed": int(seed),
            "work_size": list(ws),
            "output_size": [w, h],
            "upscale": upscale_factor((w, h), ws),  # output pixels per generated pixel (<= MAX_UPSCALE)
            "seam_crop": list(seam_box) if seam_box is not None else None,
            "seam_work_size": list(seam_ws) if seam_ws is not None else None,
            "seam_upscale": (upscale_factor((seam_box[2] - seam_box[0], seam_box[3] - seam_box[1]), seam_ws)
                             if seam_box is not None else None),
            "params": params.to_json(),
            "controls": sorted(controls),
            "contact_shadow": bool(shadow),
            "refiner": self.refiner is not None,
            "generator_pipeline": type(self.generator).__name__,
            "seam_pipeline": type(self.seam).__name__ if self.seam is not None else None,
            "timings": timings,
        }
        return SceneOutput(final=final, composite=composite, generated=generated, controls=controls,
                           generation_mask=gen_mask, record=record)
