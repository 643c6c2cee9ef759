"""The classic stage backends (procedural backgrounds, OpenCV seams) and the engines built from them:
``classic`` (runs on a CPU with no downloaded weights) and ``grounded-sam`` (classic with text-prompted
segmentation of the subject; pose, edges, backgrounds and seams stay classic)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.compositing.backgrounds import apply_shadow, contact_shadow, make_background
from pipelines.compositing.composite import alpha_composite
from pipelines.compositing.seam import inpaint_seam
from pipelines.controls.backend import ClassicControls
from pipelines.engines.bundle import Composed, Compositor, Engine, EngineEntry, OutputRequest
from pipelines.segmentation.api import CLASSIC as CLASSIC_SEGMENTATION
from pipelines.segmentation.api import GROUNDED_SAM as GROUNDED_SAM_SEGMENTATION
from pipelines.segmentation.classic import ClassicSegmenter
from pipelines.segmentation.subject import Segmenter

if TYPE_CHECKING:
    from pipelines.compositing.composite import Placement

#: ``auto`` tries engines from the highest priority down.
CLASSIC_PRIORITY = -100
GROUNDED_SAM_PRIORITY = 10


def contact_shadow_map(alpha: np.ndarray) -> np.ndarray:
    """Contact shadow for an object alpha in output coordinates (HxW float32 in [0, 0.35])."""
    return contact_shadow(np.where(alpha >= 128, 255, 0).astype(np.uint8))


class ClassicSeams:
    """Classic colour extrapolation in the seam band."""

    kind = "classic"
    uses_gpu = False

    def inpaint_seam(self, composite: np.ndarray, foreground: np.ndarray, alpha: np.ndarray,
                     background: np.ndarray, band: np.ndarray) -> np.ndarray:
        return inpaint_seam(composite, foreground, alpha, background, band)

    def backends(self) -> dict[str, str]:
        return {"seam_inpainting": "classic colour extrapolation in the seam band"}


class ClassicBackgrounds:
    """Procedural backgrounds (white, studio sweep, soft texture) with a contact shadow, composited exactly."""

    kind = "classic"
    uses_gpu = False
    settings = None

    def background(self, kind: str, size: tuple[int, int], seed: int, alpha: np.ndarray, *,
                   contact_shadow: bool) -> np.ndarray:
        bg = make_background(kind, size, seed)  # type: ignore[arg-type]
        if contact_shadow and kind != "white":
            bg = apply_shadow(bg, contact_shadow_map(alpha))
        return bg

    def place(self, request: OutputRequest, default: Placement) -> Placement:
        return default

    def compose(self, request: OutputRequest, placement: Placement, foreground: np.ndarray, alpha: np.ndarray,
                band: np.ndarray, compositor: Compositor) -> Composed:
        return classic_compose(self, compositor, request, foreground, alpha, band)

    def backends(self) -> dict[str, str]:
        return {"background": "procedural (white, studio sweep, soft texture) + contact shadow"}

    def details(self) -> dict[str, Any]:
        return {}

    def models(self) -> list[dict[str, Any]]:
        return []


def classic_compose(backgrounds: ClassicBackgrounds, compositor: Compositor, request: OutputRequest,
                    foreground: np.ndarray, alpha: np.ndarray, band: np.ndarray) -> Composed:
    """A procedural background, an exact alpha composite, then the compositor's seam inpainting in the band."""
    background = backgrounds.background(request.background, request.size, request.seed, alpha,
                                        contact_shadow=request.contact_shadow)
    composite = alpha_composite(background, foreground, alpha)
    final = compositor.inpaint_seam(composite, foreground, alpha, background, band)
    return Composed(composite=composite, final=final)


def classic_engine(requested: str = "classic", reason: str = "requested explicitly", *,
                   segmenter: Segmenter | None = None, name: str = "classic") -> Engine:
    """The classic bundle: classic segmentation (or ``segmenter``), controls, backgrounds and seams."""
    return Engine(name=name, segmenter=segmenter or ClassicSegmenter(), controller=ClassicControls(),
                  generator=ClassicBackgrounds(), compositor=ClassicSeams(), requested=requested, reason=reason)


def grounded_sam_engine(requested: str = GROUNDED_SAM_SEGMENTATION.name, reason: str = "requested explicitly",
                        model_root: str | Path | None = None) -> Engine:
    """The classic bundle with grounded-sam subject segmentation.

    Raises:
        `InputError`: the models are not found (the message says what was looked for and where).
    """
    return classic_engine(requested, reason, segmenter=GROUNDED_SAM_SEGMENTATION.build(model_root),
                          name=GROUNDED_SAM_SEGMENTATION.name)


CLASSIC = EngineEntry(name="classic",
                      build=lambda requested, reason, model_root, settings=None: classic_engine(requested, reason),
                      probe=lambda model_root, settings=None: CLASSIC_SEGMENTATION.probe(model_root),
                      priority=CLASSIC_PRIORITY)
GROUNDED_SAM = EngineEntry(name=GROUNDED_SAM_SEGMENTATION.name,
                           build=lambda requested, reason, model_root, settings=None: grounded_sam_engine(
                               requested, reason, model_root),
                           probe=lambda model_root, settings=None: GROUNDED_SAM_SEGMENTATION.probe(model_root),
                           priority=GROUNDED_SAM_PRIORITY)
