"""Engines: named bundles of backends. ``classic`` runs on a CPU with no downloaded weights.

``auto`` picks the best engine whose weights and hardware are present and says which it picked and
why; with no weights configured that is ``classic``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from pipelines.compositing.backgrounds import apply_shadow, contact_shadow, make_background
from pipelines.segmentation.cutout import cutout_product, estimate_background
from pipelines.controls.edges import canny_control
from pipelines.compositing.seam import inpaint_seam
from pipelines.errors import InputError, NothingFoundError

if TYPE_CHECKING:
    from pipelines.compositing.composite import Placement
    from pipelines.imageio import LoadedImage
    from pipelines.product import Product

logger = logging.getLogger(__name__)

#: Border uniformity above which a photo counts as a product on a plain/studio background.
PLAIN_BACKGROUND_UNIFORMITY = 0.85
#: The models inside the mediapipe 0.10.14 wheel that the classic engine uses.
MEDIAPIPE_MODELS = [
    {"id": "mediapipe/pose_landmark_full", "revision": "0.10.14", "licence": "Apache-2.0", "source": "mediapipe wheel"},
    {"id": "mediapipe/selfie_segmentation", "revision": "0.10.14", "licence": "Apache-2.0", "source": "mediapipe wheel"},
]


@dataclass
class Subject:
    """What to keep from an input photo.

    Attributes:
        kind (`str`): ``product`` (on a plain background) or ``person`` (an on-model photo).
        source (`str`): what produced the alpha: ``classic-cutout``, ``mediapipe-person``, ``input-alpha``,
            optionally suffixed ``+override``.
        alpha (`np.ndarray`): HxW uint8 soft alpha at the (normalised) input's size, 255 = keep.
        bbox (`tuple[int, int, int, int]`): XYXY pixel box of ``alpha >= 128``.
        reason (`str`): why this kind/source was chosen.
        metrics (`dict`): figures from the segmentation (background uniformity, area share, ...).
        pose (`Any`, *optional*): the pose result for people.
        evidence (`dict`): second opinions for quality flags (JSON-ready): ``route`` (face score, head/limb
            keypoints on the subject, person-mask coverage; see `pipelines.segmentation.route.RouteEvidence`)
            and, on a plain backdrop, ``backdrop`` (the cutout's evidence: backdrop colour/noise/tolerance,
            contrast, confident share; see `pipelines.segmentation.cutout.Cutout`). Empty for ``input-alpha``.
    """

    kind: str
    source: str
    alpha: np.ndarray
    bbox: tuple[int, int, int, int]
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)
    pose: Any = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Controls:
    """Control images for generation (HxWx3 uint8 each) and the pose as JSON (COCO-17), if any."""

    images: dict[str, np.ndarray]
    pose: dict[str, Any] | None = None


class Engine(Protocol):
    name: str

    def describe(self) -> dict[str, Any]: ...
    def models(self) -> list[dict[str, Any]]: ...
    def find_subject(self, image: "LoadedImage", product: "Product") -> Subject: ...
    def controls(self, image: "LoadedImage", subject: Subject) -> Controls: ...
    def background(self, kind: str, size: tuple[int, int], seed: int, alpha: np.ndarray, *,
                   contact_shadow: bool) -> np.ndarray: ...
    def inpaint_seam(self, composite: np.ndarray, foreground: np.ndarray, alpha: np.ndarray,
                     background: np.ndarray, band: np.ndarray) -> np.ndarray: ...


@dataclass
class OutputRequest:
    """One output that the per-SKU pipeline (`pipelines.catalog.store`) asks an engine to compose.

    Engines may implement two optional methods on top of `Engine`; `place_output` and `compose_output`
    fall back to the classic behaviour for engines that do not:

    - ``place(request, default) -> Placement``: where the subject goes (``default`` is the catalog's
      marketplace placement; a generative engine puts a garment where a pose template wears it);
    - ``compose(request, placement, foreground, alpha, band) -> Composed``: the output's pixels. The
      catalog then checks, before writing, that ``final`` equals ``foreground`` inside the preserve mask
      and equals ``composite`` outside ``band``.

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
    image: "LoadedImage"
    subject: Subject
    controls: Controls
    product: "Product"


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


def place_output(engine: Engine, request: OutputRequest, default: "Placement") -> "Placement":
    """The engine's placement of the subject for ``request`` (``default`` unless it has ``place``)."""
    place = getattr(engine, "place", None)
    return place(request, default) if callable(place) else default


def compose_output(engine: Engine, request: OutputRequest, placement: "Placement", foreground: np.ndarray,
                   alpha: np.ndarray, band: np.ndarray) -> Composed:
    """Compose one output with the engine's ``compose``, or the classic way when it has none.

    Args:
        engine (`Engine`): the engine.
        request (`OutputRequest`): what to make.
        placement (`Placement`): where the subject was placed (from `place_output`).
        foreground (`np.ndarray`): HxWx3 uint8, the placed subject layer.
        alpha (`np.ndarray`): HxW uint8, its alpha in output coordinates.
        band (`np.ndarray`): HxW uint8 0/255, the seam band (the only pixels seam inpainting may change).

    Returns:
        `Composed`.
    """
    compose = getattr(engine, "compose", None)
    if callable(compose):
        return compose(request, placement, foreground, alpha, band)
    return classic_compose(engine, request, foreground, alpha, band)


def classic_compose(engine: Engine, request: OutputRequest, foreground: np.ndarray, alpha: np.ndarray,
                    band: np.ndarray) -> Composed:
    """The engine's ``background``, an exact alpha composite, then its ``inpaint_seam`` in the band."""
    from pipelines.compositing.composite import alpha_composite

    background = engine.background(request.background, request.size, request.seed, alpha,
                                   contact_shadow=request.contact_shadow)
    composite = alpha_composite(background, foreground, alpha)
    final = engine.inpaint_seam(composite, foreground, alpha, background, band)
    return Composed(composite=composite, final=final)


def _bbox(alpha: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(alpha >= 128)
    if len(xs) == 0:
        raise NothingFoundError("the subject mask is empty")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def mask_override_path(product: "Product", image_path: Path, target: str) -> Path | None:
    """The analyst's override mask for ``target`` on ``image_path``, if one exists.

    Looked up, in order: ``product.yaml`` ``masks: {<target>: path}``, ``masks/<image stem>.<target>.png``,
    ``masks/<target>.png``.
    """
    spec_rel = product.spec.masks.get(target)
    if spec_rel:
        return product.dir / spec_rel
    for name in (f"{image_path.stem}.{target}.png", f"{target}.png"):
        p = product.dir / "masks" / name
        if p.is_file():
            return p
    return None


def read_override_mask(override_path: Path, source_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Read an analyst's override mask, checked against the source photo's size, at ``size`` (w, h).

    Args:
        override_path (`Path`): a greyscale PNG the size of the source photo (before any downscale).
        source_size (`tuple[int, int]`): (width, height) of the source photo.
        size (`tuple[int, int]`): (width, height) to return it at (nearest-neighbour resize).

    Returns:
        `np.ndarray`: HxW uint8 (white >= 224 include, black <= 31 exclude, grey: the model decides).

    Raises:
        `InputError`: unreadable file, or a size other than the photo's (naming both sizes).
    """
    try:
        with Image.open(override_path) as im:
            im.load()
            ov = im.convert("L")
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read mask override: {exc}", path=override_path) from None
    if ov.size != tuple(source_size):
        raise InputError(
            f"mask override is {ov.size[0]}x{ov.size[1]} but the photo is {source_size[0]}x{source_size[1]}",
            path=override_path,
        )
    if ov.size != tuple(size):
        ov = ov.resize(tuple(size), Image.Resampling.NEAREST)
    return np.asarray(ov).copy()


def apply_override(alpha: np.ndarray, override_path: Path, source_size: tuple[int, int]) -> np.ndarray:
    """Apply an analyst's mask: white (>= 224) = include, black (<= 31) = exclude, grey = keep the model's.

    Args:
        alpha (`np.ndarray`): HxW uint8 model alpha.
        override_path (`Path`): a greyscale PNG the size of the source photo (before any downscale).
        source_size (`tuple[int, int]`): (width, height) of the source photo.

    Returns:
        `np.ndarray`: HxW uint8 alpha.
    """
    h, w = alpha.shape
    o = read_override_mask(override_path, source_size, (w, h))
    out = alpha.copy()
    out[o >= 224] = 255
    out[o <= 31] = 0
    return out


class ClassicEngine:
    """The embedded engine: OpenCV cutout, mediapipe person/pose, procedural scenes, OpenCV seams."""

    name = "classic"

    def __init__(self, requested: str = "classic", reason: str = "requested explicitly"):
        self.requested = requested
        self.reason = reason

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "requested": self.requested,
            "reason": self.reason,
            "backends": {
                "product_segmentation": "classic-cutout (backdrop model + edge/texture evidence + guided filter)",
                "subject_routing": "evidence of a person: mediapipe face detection + pose keypoints on the subject",
                "person_segmentation": "mediapipe selfie/pose segmentation + pose-guided refinement",
                "pose": "mediapipe pose (COCO-17 / OpenPose-18 skeleton)",
                "edges": "opencv canny",
                "background": "procedural (white, studio sweep, soft texture) + contact shadow",
                "seam_inpainting": "classic colour extrapolation in the seam band",
            },
        }

    def models(self) -> list[dict[str, Any]]:
        return [dict(m) for m in MEDIAPIPE_MODELS]

    # -- segmentation -------------------------------------------------------------------------------
    def find_subject(self, image: "LoadedImage", product: "Product") -> Subject:
        """Find the product or the person in a photo (routed by evidence, see `segment_subject`); apply overrides."""
        if image.alpha is not None and int(image.alpha.min()) < 250:
            subject = Subject(kind="product", source="input-alpha", alpha=image.alpha.copy(), bbox=(0, 0, 1, 1),
                              reason="the photo has a transparent background")
        else:
            subject = self.segment_subject(image.rgb, name=str(image.path))
        alpha, kind, source, reason = subject.alpha, subject.kind, subject.source, subject.reason
        metrics, pose = subject.metrics, subject.pose
        for target in ("product", kind):
            ov = mask_override_path(product, image.path, target)
            if ov is not None:
                alpha = apply_override(alpha, ov, image.source_size)
                source += "+override"
                metrics["override"] = str(ov.relative_to(product.dir))
                break
        metrics["area_fraction"] = round(float((alpha >= 128).mean()), 4)
        return Subject(kind=kind, source=source, alpha=alpha, bbox=_bbox(alpha), reason=reason, metrics=metrics,
                       pose=pose, evidence=subject.evidence)

    def segment_subject(self, rgb: np.ndarray, *, name: str = "image") -> Subject:
        """Segment a photo without overrides: the product on a plain backdrop, or the person in frame.

        Routing is by evidence of a person (`pipelines.segmentation.route`: face, pose keypoints on the subject),
        not by how plain the backdrop is. A product is cut out against the backdrop model
        (`pipelines.segmentation.cutout`); a person with the person segmenter, and on a plain backdrop its
        boundary band is taken from the backdrop model (clean edges, see `fuse_person_with_backdrop`). A
        scene without a plain backdrop goes to the person segmenter as before.

        Args:
            rgb (`np.ndarray`): HxWx3 uint8 RGB.
            name (`str`, *optional*): how error messages name the photo.

        Returns:
            `Subject`; ``metrics`` holds ``background_uniformity``, ``route`` (the evidence, JSON) and, on a
            plain backdrop, ``backdrop`` (the cutout's evidence); ``evidence`` holds the same for flags.

        Raises:
            `NothingFoundError`: no product on a plain backdrop and no person.
        """
        from pipelines.segmentation.route import fuse_person_with_backdrop, route_subject

        metrics: dict[str, Any] = {}
        pose = None
        _, _, uniformity = estimate_background(rgb)
        metrics["background_uniformity"] = round(uniformity, 4)
        plain = uniformity >= PLAIN_BACKGROUND_UNIFORMITY
        backdrop = f"border uniformity {uniformity:.2f} {'>=' if plain else '<'} {PLAIN_BACKGROUND_UNIFORMITY}"
        cut, cut_error = None, None
        if plain:
            try:
                cut = cutout_product(rgb)
            except NothingFoundError as exc:
                cut_error = exc
        route = route_subject(rgb, cut.mask if cut is not None else None)
        metrics["route"] = route.to_json()
        evidence: dict[str, Any] = {"route": metrics["route"]}
        if cut is not None:
            metrics["backdrop"] = dict(cut.evidence)
            evidence["backdrop"] = metrics["backdrop"]
        if plain and not route.person:
            if cut is None:
                raise NothingFoundError(f"{name}: {cut_error}")
            alpha, kind, source = cut.alpha, "product", "classic-cutout"
            reason = f"product on a plain background ({backdrop}); {route.reason}"
        else:
            # a face is evidence enough for the selfie model's mask when the pose model finds nobody
            alpha, pose = self._person(rgb, without_pose=route.person or (not plain and route.face_score >= 0.5))
            if alpha is None and cut is not None:
                alpha, kind, source = cut.alpha, "product", "classic-cutout"
                reason = (f"plain background ({backdrop}); person evidence ({route.reason}) but the person "
                          "segmenter found nobody: product cutout")
            elif alpha is None:
                raise NothingFoundError(
                    f"{name}: the background is not plain ({backdrop}) and no person was found; shoot the "
                    "product on a plain background or add masks/product.png"
                )
            else:
                kind, source = "person", "mediapipe-person"
                metrics["pose_keypoints_found"] = int((pose.keypoints[:, 2] > 0.5).sum()) if pose is not None else 0
                metrics["route"]["person_mask_fraction"] = round(float((alpha >= 128).mean()), 4)
                if cut is not None:
                    alpha, fusion = fuse_person_with_backdrop(alpha, cut)
                    metrics["route"]["fused_with_backdrop"] = fusion
                    reason = (f"person in frame ({route.reason}) on a plain background ({backdrop}): person "
                              "segmenter, edges from the backdrop model")
                else:
                    reason = f"scene background ({backdrop}) with a person ({route.reason})"
        return Subject(kind=kind, source=source, alpha=alpha, bbox=_bbox(alpha), reason=reason, metrics=metrics,
                       pose=pose, evidence=evidence)

    def _person(self, rgb: np.ndarray, *, without_pose: bool = False):
        """(soft alpha uint8, main pose) of the people in ``rgb``; ``(None, None)`` when nobody is found.

        With ``without_pose`` (other evidence of a person, e.g. a face), the mask counts even when the pose
        model found nobody; the pose is then ``None``.
        """
        from pipelines.segmentation.person import get_person_segmenter

        seg = get_person_segmenter()(rgb)
        if not seg.poses and not without_pose:
            return None, None
        alpha = np.clip(np.round(seg.mask * 255.0), 0, 255).astype(np.uint8)
        if not (alpha >= 128).any():
            return None, None
        return alpha, (seg.poses[0] if seg.poses else None)

    # -- controls -----------------------------------------------------------------------------------
    def controls(self, image: "LoadedImage", subject: Subject) -> Controls:
        """Canny edges of the subject, and for people an OpenPose-style skeleton plus COCO-17 JSON."""
        mask = np.where(subject.alpha >= 128, 255, 0).astype(np.uint8)
        images = {"canny": canny_control(image.rgb, mask)}
        pose_json = None
        if subject.kind == "person":
            from pipelines.controls.pose import get_pose_estimator, render_openpose

            pose = subject.pose or get_pose_estimator()(image.rgb)
            if pose.found:
                images["openpose"] = render_openpose(pose)
                pose_json = pose.to_json()
        return Controls(images=images, pose=pose_json)

    # -- generation -----------------------------------------------------------------------------------
    def background(self, kind: str, size: tuple[int, int], seed: int, alpha: np.ndarray, *,
                   contact_shadow: bool) -> np.ndarray:
        """A procedural background of ``kind`` at ``size`` (w, h), with a contact shadow under ``alpha``."""
        bg = make_background(kind, size, seed)  # type: ignore[arg-type]
        if contact_shadow and kind != "white":
            bg = apply_shadow(bg, contact_shadow_map(alpha))
        return bg

    def inpaint_seam(self, composite, foreground, alpha, background, band):
        return inpaint_seam(composite, foreground, alpha, background, band)


def contact_shadow_map(alpha: np.ndarray) -> np.ndarray:
    """Contact shadow for an object alpha in output coordinates (HxW float32 in [0, 0.35])."""
    return contact_shadow(np.where(alpha >= 128, 255, 0).astype(np.uint8))


@dataclass
class EngineEntry:
    """A registered engine.

    Attributes:
        name (`str`): the ``--engine`` value.
        factory (`Callable`): ``factory(requested, reason, model_root, settings=None) -> Engine``
            (``settings``: the `GenerationSettings`, or `None` for the defaults).
        probe (`Callable`): ``probe(model_root, settings=None) -> (available, reason)``; cheap (no model loading).
        priority (`int`): ``auto`` tries available engines from the highest priority down.
    """

    name: str
    factory: Callable[..., Engine]
    probe: Callable[..., tuple[bool, str]]
    priority: int = 0


ENGINES: dict[str, EngineEntry] = {}
#: Modules that register engines on import (e.g. the generative engines). An engine adds its module here.
ENGINE_MODULES: list[str] = []
ENGINE_MODULES.append("pipelines.engines.grounded_sam")  # GroundingDINO + SAM (issue 3)
ENGINE_MODULES.append("pipelines.engines.generative")  # FLUX.1 / SDXL generation (issue 4)


def register_engine(entry: EngineEntry) -> EngineEntry:
    """Register an engine (replacing one of the same name)."""
    ENGINES[entry.name] = entry
    return entry


def _load_engine_modules() -> None:
    import importlib

    for mod in ENGINE_MODULES:
        importlib.import_module(mod)


def engine_names() -> list[str]:
    """Every ``--engine`` value: ``auto`` then the registered engines."""
    _load_engine_modules()
    return ["auto", *sorted(ENGINES)]


register_engine(EngineEntry(
    name="classic",
    factory=lambda requested, reason, model_root, settings=None: ClassicEngine(requested, reason),
    probe=lambda model_root, settings=None: (True, "the embedded classic engine needs no weights"),
    priority=-100,
))


def get_engine(name: str = "auto", *, model_root: str | Path | None = None, settings: Any = None) -> Engine:
    """Resolve an engine name to an engine instance.

    Args:
        name (`str`, *optional*, defaults to ``"auto"``): ``auto`` or a registered engine (see
            `engine_names`); ``classic`` is always there.
        model_root (`str | Path`, *optional*): where model weights live (``DIR/<org>/<name>/``).
        settings (`GenerationSettings`, *optional*): the generative engines' settings (the CLI and flows
            pass `VitrineSettings.generation`); default `GenerationSettings()`.

    Returns:
        An `Engine`; its ``describe()`` says which engine was picked and why.

    Raises:
        `InputError`: unknown engine name, or an explicitly requested engine whose weights are missing
        (the message says what is missing).
    """
    names = engine_names()
    if name not in names:
        raise InputError(f"unknown engine {name!r}; expected one of {', '.join(names)}", key="engine")
    if name != "auto":
        entry = ENGINES[name]
        ok, why = entry.probe(model_root, settings=settings)
        if not ok:
            raise InputError(f"engine {name!r} is not available: {why}", key="engine")
        return entry.factory(name, "requested explicitly", model_root, settings=settings)
    skipped = []
    for entry in sorted(ENGINES.values(), key=lambda e: -e.priority):
        if entry.name == "classic":
            continue
        ok, why = entry.probe(model_root, settings=settings)
        if ok:
            return entry.factory("auto", f"picked {entry.name}: {why}", model_root, settings=settings)
        skipped.append(f"{entry.name}: {why}")
    base = (
        "no generation model weights configured (no --model-root)"
        if model_root is None
        else f"no supported generation model found under {model_root}"
    )
    detail = f" ({'; '.join(skipped)})" if skipped else ""
    return ClassicEngine("auto", base + detail + "; the embedded classic engine needs none")
