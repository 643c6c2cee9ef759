"""Instruction edits with FLUX.1 Kontext, at the image's own resolution, returned at its exact size.

Kontext was trained on a fixed set of resolutions (diffusers' ``PREFERRED_KONTEXT_RESOLUTIONS``, 672x1568
to 1568x672, about one megapixel). Left to itself, diffusers' `FluxKontextPipeline` resizes the input to the
preferred resolution of the nearest aspect ratio and returns an image of *that* size (diffusers #11942,
black-forest-labs/flux #458): a 1600x2000 catalog image comes back 880x1184, a different aspect ratio, and
scaling it back up makes every generated pixel 1.7x soft.

`KontextEditor` makes the working size explicit and undoes it:

1. the image (and, side by side to its right, an optional reference image: a garment, a face) is the
   *context* canvas;
2. the working size. ``resolution="native"`` (default): the canvas's own size, scaled down only when its
   area is over ``max_megapixels`` (default 4.2, 2048x2048) or over ``work_side**2`` when ``work_side`` is
   set, and rounded *up* to the model's multiple (16 for FLUX.1), so a 1600x2000 catalog image is edited at
   1600x2000 and nothing is upscaled. ``resolution="preferred"``: the preferred resolution with the aspect
   ratio nearest the canvas's (scaled to the model's native side: exactly diffusers' list for FLUX.1 at
   1024, proportionally smaller for tiny test models) — faster (about 1 MP), softer (recorded);
3. ``fit="pad"`` (default): the canvas is scaled to fit inside that size with its aspect kept and the rest
   is filled by reflecting the border; ``fit="stretch"``: the canvas is resized to it;
4. Kontext runs at exactly that size (``_auto_resize=False``, ``max_area = width * height``);
5. the content box is cut out, the image part of the context taken, and resized (Lanczos) to the input's
   exact ``(width, height)``. The record's ``upscale`` is how much that last resize enlarged Kontext's
   pixels (1.0: not at all); `UPSCALE_LIMIT` (1.2) is what counts as native resolution.

The pipeline is passed in (tests pass a tiny one, production the real FLUX.1-Kontext-dev loaded with
`pipelines.generation.loading.load_pipeline`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from pipelines.errors import InputError

#: diffusers' ``PREFERRED_KONTEXT_RESOLUTIONS`` (width, height), at FLUX.1's native side of 1024 px.
PREFERRED_KONTEXT_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184), (944, 1104),
    (1024, 1024), (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752), (1456, 720), (1504, 688),
    (1568, 672),
)  # fmt: skip
REFERENCE_SIDE = 1024
FITS = ("pad", "stretch")
RESOLUTIONS = ("native", "preferred")
#: An edit whose Kontext pixels are enlarged more than this to reach the output size is not native resolution.
UPSCALE_LIMIT = 1.2


@dataclass(frozen=True)
class EditParams:
    """Parameters of one Kontext edit (all recorded in the manifest).

    Attributes:
        steps (`int`, *optional*, defaults to 28): denoising steps (FLUX.1-Kontext-dev's card: 28).
        guidance (`float`, *optional*, defaults to 2.5): distilled guidance scale (the card: 2.5).
        max_sequence_length (`int`, *optional*, defaults to 512): T5 prompt length.
        fit (`str`, *optional*, defaults to ``"pad"``): ``pad`` (aspect kept, border reflected) or
            ``stretch`` (resized to the preferred resolution) — see the module docstring.
        work_side (`int`, *optional*): ``preferred``: the side of the square the preferred resolutions are
            scaled to, default the model's native side (its VAE's ``sample_size``: 1024 for FLUX.1);
            ``native``: the working area is at most ``work_side**2``.
        resolution (`str`, *optional*, defaults to ``"native"``): ``native`` (the canvas's own size, capped
            by ``max_megapixels``) or ``preferred`` (Kontext's ~1 MP training resolutions) — see the module
            docstring.
        max_megapixels (`float`, *optional*, defaults to 4.2): ``native``: the largest working area, in
            megapixels (reference included), in [0.01, 16].
    """

    steps: int = 28
    guidance: float = 2.5
    max_sequence_length: int | None = 512
    fit: str = "pad"
    work_side: int | None = None
    resolution: str = "native"
    max_megapixels: float = 4.2

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 200:
            raise InputError(f"steps must be in [1, 200], got {self.steps}", key="steps")
        if not 0 <= self.guidance <= 100:
            raise InputError(f"guidance must be in [0, 100], got {self.guidance}", key="guidance")
        if self.fit not in FITS:
            raise InputError(f"fit must be one of {', '.join(FITS)}, got {self.fit!r}", key="fit")
        if self.work_side is not None and not 16 <= self.work_side <= 4096:
            raise InputError(f"work_side must be in [16, 4096], got {self.work_side}", key="work_side")
        if self.resolution not in RESOLUTIONS:
            raise InputError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {self.resolution!r}",
                             key="resolution")
        if not 0.01 <= self.max_megapixels <= 16:
            raise InputError(f"max_megapixels must be in [0.01, 16], got {self.max_megapixels}",
                             key="max_megapixels")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EditOutput:
    """What `KontextEditor` returns.

    Attributes:
        image (`np.ndarray`): HxWx3 uint8, the edited image at the input's exact size.
        model_output (`np.ndarray`): hxwx3 uint8, Kontext's raw output at the preferred resolution.
        record (`dict`): sizes, boxes, parameters and timings (for the manifest).
    """

    image: np.ndarray
    model_output: np.ndarray
    record: dict[str, Any]


def preferred_resolutions(side: int = REFERENCE_SIDE, multiple: int = 16) -> list[tuple[int, int]]:
    """Kontext's preferred resolutions scaled to a native ``side`` and rounded to ``multiple``.

    Args:
        side (`int`, *optional*, defaults to 1024): the model's native side; 1024 gives diffusers' list.
        multiple (`int`, *optional*, defaults to 16): both sides are multiples of this (FLUX: VAE scale x 2).

    Returns:
        `list[tuple[int, int]]`: (width, height) pairs, distinct, ordered from tallest to widest.
    """
    out: list[tuple[int, int]] = []
    for w, h in PREFERRED_KONTEXT_RESOLUTIONS:
        sw = max(multiple, int(round(w * side / REFERENCE_SIDE / multiple)) * multiple)
        sh = max(multiple, int(round(h * side / REFERENCE_SIDE / multiple)) * multiple)
        if (sw, sh) not in out:
            out.append((sw, sh))
    return out


def nearest_resolution(size: tuple[int, int], resolutions: list[tuple[int, int]]) -> tuple[int, int]:
    """The resolution whose aspect ratio is nearest ``size``'s (log-ratio distance; ties: the first)."""
    aspect = math.log(size[0] / size[1])
    return min(resolutions, key=lambda r: abs(math.log(r[0] / r[1]) - aspect))


def native_size(size: tuple[int, int], max_area: float, multiple: int) -> tuple[int, int]:
    """The working size for a canvas of ``size`` (width, height) at its own resolution.

    The canvas is scaled down (aspect kept) only when its area is over ``max_area`` pixels, then each side is
    rounded *up* to ``multiple``, so the canvas always fits inside without being enlarged.

    Returns:
        `tuple[int, int]`: (width, height), both multiples of ``multiple``, each >= ``multiple``.
    """
    w, h = size
    s = min(1.0, math.sqrt(max_area / (w * h)))
    sw, sh = max(1, int(math.floor(w * s))), max(1, int(math.floor(h * s)))
    return (max(multiple, -(-sw // multiple) * multiple), max(multiple, -(-sh // multiple) * multiple))


def fit_box(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int, int, int]:
    """XYXY box of ``size`` scaled to fit inside ``target`` with its aspect kept, centred (integer pixels)."""
    w, h = size
    tw, th = target
    s = min(tw / w, th / h)
    rw, rh = min(tw, max(1, int(round(w * s)))), min(th, max(1, int(round(h * s))))
    x0, y0 = (tw - rw) // 2, (th - rh) // 2
    return x0, y0, x0 + rw, y0 + rh


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (a.shape[1], a.shape[0]) == tuple(size):
        return a.copy()
    return np.asarray(Image.fromarray(a).resize(tuple(size), Image.Resampling.LANCZOS))


def context_canvas(image: np.ndarray, reference: np.ndarray | None) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The image, with ``reference`` scaled to its height and placed to its right, and the image's box.

    Returns:
        `tuple`: (HxW'x3 uint8 canvas, XYXY box of ``image`` in it).
    """
    h, w = image.shape[:2]
    if reference is None:
        return image, (0, 0, w, h)
    rh, rw = reference.shape[:2]
    ref = _resize(reference, (max(1, int(round(rw * h / rh))), h))
    return np.concatenate([image, ref], axis=1), (0, 0, w, h)


def _check_rgb(name: str, a: Any) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"{name} must be an HxWx3 uint8 RGB array, got {getattr(a, 'shape', type(a).__name__)}",
                         key=name)
    if a.shape[0] < 2 or a.shape[1] < 2:
        raise InputError(f"{name} is too small ({a.shape[1]}x{a.shape[0]})", key=name)


class KontextEditor:
    """Instruction edits with a FLUX.1 Kontext pipeline, output at the input's exact size and aspect ratio.

    Args:
        pipe: a diffusers `FluxKontextPipeline` (or anything with its calling convention and a ``vae``).
        model_id (`str`, *optional*): the model's repo id, recorded with each edit.
    """

    def __init__(self, pipe, *, model_id: str | None = None):
        self.pipe = pipe
        self.model_id = model_id

    # -- steps ----------------------------------------------------------------------------------------
    def multiple(self) -> int:
        """What both sides of Kontext's input and output must be a multiple of (VAE scale factor x 2)."""
        return int(getattr(self.pipe, "vae_scale_factor", 8)) * 2

    def native_side(self) -> int:
        s = self.pipe.vae.config.sample_size
        return int(s[0] if isinstance(s, (list, tuple)) else s)

    def plan(self, size: tuple[int, int], params: EditParams) -> dict[str, Any]:
        """The working resolution and content box for a context canvas of ``size`` (width, height).

        Returns:
            `dict`: ``model_size`` [w, h] (Kontext's input and output size), ``content_box`` XYXY (where the
            canvas lies in it), ``resolution`` (the mode), ``upscale`` (how much the content box is enlarged
            back to the canvas size: >= 1.0 means enlarged), plus ``side`` and ``resolutions`` (preferred) or
            ``max_area`` (native).
        """
        if params.resolution == "native":
            cap = min(params.max_megapixels * 1e6, float(params.work_side) ** 2 if params.work_side else math.inf)
            target = native_size(size, cap, self.multiple())
            extra: dict[str, Any] = {"max_area": int(cap)}
        else:
            side = params.work_side or self.native_side()
            resolutions = preferred_resolutions(side, self.multiple())
            target = nearest_resolution(size, resolutions)
            extra = {"side": side, "resolutions": [list(r) for r in resolutions]}
        box = fit_box(size, target) if params.fit == "pad" else (0, 0, target[0], target[1])
        upscale = max(size[0] / (box[2] - box[0]), size[1] / (box[3] - box[1]))
        return {"model_size": list(target), "content_box": list(box), "resolution": params.resolution,
                "upscale": round(upscale, 4), **extra}

    def _to_model(self, canvas: np.ndarray, plan: dict[str, Any]) -> np.ndarray:
        tw, th = plan["model_size"]
        x0, y0, x1, y1 = plan["content_box"]
        content = _resize(canvas, (x1 - x0, y1 - y0))
        if (x1 - x0, y1 - y0) == (tw, th):
            return content
        return cv2.copyMakeBorder(content, y0, th - y1, x0, tw - x1, cv2.BORDER_REFLECT_101 if min(
            content.shape[:2]) > 1 else cv2.BORDER_REPLICATE)

    def run(self, model_input: np.ndarray, prompt: str, seed: int, params: EditParams) -> np.ndarray:
        """One Kontext call at exactly ``model_input``'s size; returns hxwx3 uint8."""
        import torch

        from pipelines.generation.loading import enable_offload_now, prepare_for_call
        from pipelines.generation.oom import call_with_oom_fallback

        h, w = model_input.shape[:2]
        kwargs = dict(image=Image.fromarray(model_input), prompt=prompt, height=h, width=w, max_area=w * h,
                      _auto_resize=False, num_inference_steps=params.steps, guidance_scale=params.guidance,
                      generator=torch.Generator("cpu").manual_seed(int(seed)), output_type="np")
        if params.max_sequence_length:
            kwargs["max_sequence_length"] = params.max_sequence_length
        prepare_for_call(self.pipe)
        images = call_with_oom_fallback(self.pipe, kwargs, enable_offload=lambda: enable_offload_now(self.pipe),
                                        what="editing with Kontext")
        out = np.clip(np.round(np.asarray(images[0], np.float32) * 255.0), 0, 255).astype(np.uint8)
        return out if out.shape[:2] == (h, w) else _resize(out, (w, h))

    # -- call -----------------------------------------------------------------------------------------
    def __call__(
        self,
        image: np.ndarray,
        instruction: str,
        *,
        seed: int = 0,
        params: EditParams | None = None,
        reference: np.ndarray | None = None,
    ) -> EditOutput:
        """Edit ``image`` as ``instruction`` says.

        Args:
            image (`np.ndarray`): HxWx3 uint8 RGB.
            instruction (`str`): the edit, e.g. ``"replace the floor with white marble"``.
            seed (`int`, *optional*, defaults to 0): the generator seed, in [0, 2**63).
            params (`EditParams`, *optional*): steps, guidance, fit, work side; defaults to `EditParams()`.
            reference (`np.ndarray`, *optional*): HxWx3 uint8, a reference image (a garment, a face) placed
                to the right of ``image`` in Kontext's context; only the image part is returned.

        Returns:
            `EditOutput`: ``image`` has exactly the input's shape (H, W, 3).

        Raises:
            `InputError`: a bad image, an empty instruction or a bad seed.
        """
        # 1. Check inputs
        params = params or EditParams()
        _check_rgb("image", image)
        if reference is not None:
            _check_rgb("reference", reference)
        if not isinstance(instruction, str) or not instruction.strip():
            raise InputError("the edit instruction is empty", key="instruction")
        if not 0 <= int(seed) < 2**63:
            raise InputError(f"seed must be a non-negative integer, got {seed}", key="seed")
        h, w = image.shape[:2]
        t0 = time.perf_counter()

        # 2. Context canvas (image | reference) and the preferred resolution nearest its aspect ratio
        canvas, image_box = context_canvas(image, reference)
        ch, cw = canvas.shape[:2]
        plan = self.plan((cw, ch), params)

        # 3. Kontext at exactly that size
        model_input = self._to_model(canvas, plan)
        model_output = self.run(model_input, instruction.strip(), seed, params)

        # 4. Undo: the content box, back to the canvas size, the image part, the input's exact size
        x0, y0, x1, y1 = plan["content_box"]
        content = _resize(model_output[y0:y1, x0:x1], (cw, ch))
        ix0, iy0, ix1, iy1 = image_box
        edited = _resize(np.ascontiguousarray(content[iy0:iy1, ix0:ix1]), (w, h))

        # 5. Record
        record = {
            "model": self.model_id,
            "instruction": instruction.strip(),
            "seed": int(seed),
            "params": params.to_json(),
            "input_size": [w, h],
            "context_size": [cw, ch],
            "reference": reference is not None,
            "model_size": plan["model_size"],
            "content_box": plan["content_box"],
            "resolution": plan["resolution"],
            "upscale": plan["upscale"],
            "output_size": [int(edited.shape[1]), int(edited.shape[0])],
            "seconds": round(time.perf_counter() - t0, 4),
        }
        return EditOutput(image=edited, model_output=model_output, record=record)
