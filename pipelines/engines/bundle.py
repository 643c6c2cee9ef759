"""An engine is a bundle of stage backends: what finds the subject, what makes its control images, what
makes the background (procedural or generated) and what inpaints the seam.

Each stage has a small protocol (`Segmenter` in `pipelines.segmentation.subject`, `Controller` in
`pipelines.controls.backend`, `Generator` and `Compositor` here); an `Engine` names one backend per stage and
answers the per-SKU render's questions (`pipelines.catalog.product_render`) by asking them. The engines Vitrine
ships are built in `pipelines.engines.classic` and `pipelines.engines.generative` and picked by
`pipelines.engines.registry.get_engine`; a test or a new engine builds its own bundle from any backends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pipelines.controls.backend import Controller, Controls
from pipelines.segmentation.classic import MEDIAPIPE_MODELS
from pipelines.segmentation.subject import Segmenter, Subject

if TYPE_CHECKING:
    from pipelines.compositing.composite import Placement
    from pipelines.generation.settings import GenerationSettings
    from pipelines.imageio import LoadedImage
    from pipelines.product import Product


@dataclass
class OutputRequest:
    """One output that the per-SKU render (`pipelines.catalog.product_render`) asks an engine to compose.

    The engine places the subject (`Engine.place`: the catalog's marketplace placement, or where a pose
    template wears a garment) and composes the output's pixels (`Engine.compose`). The catalog then checks,
    before writing, that ``final`` equals ``foreground`` inside the preserve mask and equals ``composite``
    outside ``band``.

    Attributes:
        kind (`str`): ``main``, ``lifestyle`` or ``alternate``.
        file (`str`): the output's file name (e.g. ``lifestyle-studio-s0.png``).
        background (`str`): ``white``, ``studio`` or ``texture``.
        size (`tuple[int, int]`): (width, height) of the output.
        seed (`int`): the generation seed (from ``product.yaml`` ``seeds``).
        contact_shadow (`bool`): whether a contact shadow belongs under the subject.
        image (`LoadedImage`): the normalised input photo.
        subject (`Subject`): what to keep from it (alpha at the input's size, kind, pose).
        controls (`Controls`): control images at the input's size, and the pose JSON.
        product (`Product`): the product folder (prompts, garment type, commercial flag).
    """

    kind: str
    file: str
    background: str
    size: tuple[int, int]
    seed: int
    contact_shadow: bool
    image: LoadedImage
    subject: Subject
    controls: Controls
    product: Product


@dataclass
class Composed:
    """An engine's composed output.

    Attributes:
        composite (`np.ndarray`): HxWx3 uint8, background (procedural or generated) with the placed
            subject alpha-composited over it, before seam inpainting.
        final (`np.ndarray`): HxWx3 uint8, ``composite`` with the seam band inpainted (only the band).
        record (`dict`): recorded in the output's manifest entry as ``generation`` (empty: nothing).
        work (`dict`): intermediates to save in ``work/``: name -> (kind, HxW[x3] uint8 array, is_mask).
    """

    composite: np.ndarray
    final: np.ndarray
    record: dict[str, Any] = field(default_factory=dict)
    work: dict[str, tuple[str, np.ndarray, bool]] = field(default_factory=dict)


class Compositor(Protocol):
    """The seam stage: inpaints the band between the kept subject and its background.

    Attributes:
        kind (`str`): which backend this is (``classic``).
        uses_gpu (`bool`): whether its models may run on a GPU.
    """

    kind: str
    uses_gpu: bool

    def inpaint_seam(self, composite: np.ndarray, foreground: np.ndarray, alpha: np.ndarray,
                     background: np.ndarray, band: np.ndarray) -> np.ndarray:
        """``composite`` with only the pixels of ``band`` (HxW uint8 0/255) changed."""
        ...

    def backends(self) -> dict[str, str]:
        """Its entries of the engine's ``describe()["backends"]`` (``seam_inpainting``)."""
        ...


class Generator(Protocol):
    """The background stage: procedural backgrounds, or a scene generated around the subject.

    Attributes:
        kind (`str`): which backend this is: ``classic`` (procedural), ``flux`` or ``sdxl`` (generated).
        uses_gpu (`bool`): whether its models may run on a GPU.
        settings (`GenerationSettings | None`): the generation settings (steps, work size...); `None` for
            procedural backgrounds.
    """

    kind: str
    uses_gpu: bool
    settings: GenerationSettings | None

    def background(self, kind: str, size: tuple[int, int], seed: int, alpha: np.ndarray, *,
                   contact_shadow: bool) -> np.ndarray:
        """A procedural background of ``kind`` at ``size`` (w, h), with a contact shadow under ``alpha``."""
        ...

    def place(self, request: OutputRequest, default: Placement) -> Placement:
        """Where the subject goes (``default``: the catalog's marketplace placement)."""
        ...

    def compose(self, request: OutputRequest, placement: Placement, foreground: np.ndarray, alpha: np.ndarray,
                band: np.ndarray, compositor: Compositor) -> Composed:
        """The output's pixels; ``compositor`` inpaints the seam of the outputs it does not generate."""
        ...

    def backends(self) -> dict[str, str]:
        """Its entries of the engine's ``describe()["backends"]`` (``background``, ``generation``...)."""
        ...

    def details(self) -> dict[str, Any]:
        """What the engine's ``describe()`` records besides the backends (models, settings...)."""
        ...

    def models(self) -> list[dict[str, Any]]:
        """The model records it uses (JSON-ready)."""
        ...


@dataclass(frozen=True)
class Engine:
    """A named bundle of stage backends.

    Attributes:
        name (`str`): the ``--engine`` value (``classic``, ``grounded-sam``, ``flux``, ``sdxl``) or a test's name.
        segmenter (`Segmenter`): finds the subject (classic routing/cutout/person, or grounded-sam).
        controller (`Controller`): pose and edge control images (`pipelines.controls`).
        generator (`Generator`): backgrounds (procedural, or generated by FLUX.1 / SDXL) and the compose step.
        compositor (`Compositor`): seam inpainting.
        requested (`str`): what the user asked for (the name or ``auto``).
        reason (`str`): why this engine was picked.
    """

    name: str
    segmenter: Segmenter
    controller: Controller
    generator: Generator
    compositor: Compositor
    requested: str = ""
    reason: str = "requested explicitly"

    @property
    def uses_gpu(self) -> bool:
        """Whether any stage may run models on a GPU (a GPU worker then guards its calls)."""
        return any(s.uses_gpu for s in (self.segmenter, self.controller, self.generator, self.compositor))

    # -- the stages ---------------------------------------------------------------------------------
    def find_subject(self, image: LoadedImage, product: Product) -> Subject:
        """The subject of ``image`` (the analyst's overrides applied), by the segmenter."""
        return self.segmenter.find_subject(image, product)

    def controls(self, image: LoadedImage, subject: Subject) -> Controls:
        """The subject's control images (edges; a skeleton and the pose JSON for people), by the controller."""
        return self.controller.controls(image.rgb, subject.alpha, person=subject.kind == "person",
                                        pose=subject.pose)

    def background(self, kind: str, size: tuple[int, int], seed: int, alpha: np.ndarray, *,
                   contact_shadow: bool) -> np.ndarray:
        """A procedural background of ``kind`` at ``size`` (w, h), with a contact shadow under ``alpha``."""
        return self.generator.background(kind, size, seed, alpha, contact_shadow=contact_shadow)

    def inpaint_seam(self, composite: np.ndarray, foreground: np.ndarray, alpha: np.ndarray,
                     background: np.ndarray, band: np.ndarray) -> np.ndarray:
        return self.compositor.inpaint_seam(composite, foreground, alpha, background, band)

    def place(self, request: OutputRequest, default: Placement) -> Placement:
        """Where the subject of ``request`` goes (``default``: the catalog's marketplace placement)."""
        return self.generator.place(request, default)

    def compose(self, request: OutputRequest, placement: Placement, foreground: np.ndarray, alpha: np.ndarray,
                band: np.ndarray) -> Composed:
        """Compose one output.

        Args:
            request (`OutputRequest`): what to make.
            placement (`Placement`): where the subject was placed (from `place`).
            foreground (`np.ndarray`): HxWx3 uint8, the placed subject layer.
            alpha (`np.ndarray`): HxW uint8, its alpha in output coordinates.
            band (`np.ndarray`): HxW uint8 0/255, the seam band (the only pixels seam inpainting may change).

        Returns:
            `Composed`.
        """
        return self.generator.compose(request, placement, foreground, alpha, band, self.compositor)

    # -- what it is -----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Name, what was requested, why, each stage's backend, and the generator's details (recorded in
        every manifest and in each SKU's content hash)."""
        backends = {**self.segmenter.backends(), **self.controller.backends(), **self.compositor.backends(),
                    **self.generator.backends()}
        return {"name": self.name, "requested": self.requested, "reason": self.reason, "backends": backends,
                **self.generator.details()}

    def models(self) -> list[dict[str, Any]]:
        """Every model the engine uses (JSON-ready): the classic mediapipe models, the segmenter's and the
        generator's, in the order manifests have always listed them."""
        mediapipe = [dict(m) for m in MEDIAPIPE_MODELS]
        segmenter, generator = self.segmenter.models(), self.generator.models()
        if not generator:
            return [*segmenter, *mediapipe]
        return [*mediapipe, *segmenter, *generator]


@dataclass(frozen=True)
class EngineEntry:
    """An engine ``--engine`` can name.

    Attributes:
        name (`str`): the ``--engine`` value.
        build (`Callable`): ``build(requested, reason, model_root, settings=None) -> Engine``
            (``settings``: the `GenerationSettings`, or `None` for the defaults).
        probe (`Callable`): ``probe(model_root, settings=None) -> (available, reason)``; cheap (no model
            loading).
        priority (`int`): ``auto`` tries available engines from the highest priority down.
    """

    name: str
    build: Callable[..., Engine]
    probe: Callable[..., tuple[bool, str]]
    priority: int = 0
