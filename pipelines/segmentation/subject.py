"""What a segmentation backend hands the rest of the pipeline: the `Subject` to keep from a photo, and the
`Segmenter` protocol every subject-finding backend (classic, grounded-sam) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pipelines.errors import NothingFoundError

if TYPE_CHECKING:
    from pipelines.imageio import LoadedImage
    from pipelines.product import Product

#: Border uniformity above which a photo counts as a product on a plain/studio background.
PLAIN_BACKGROUND_UNIFORMITY = 0.85


@dataclass
class Subject:
    """What to keep from an input photo.

    Attributes:
        kind (`str`): ``product`` (on a plain background) or ``person`` (an on-model photo).
        source (`str`): what produced the alpha: ``classic-cutout``, ``mediapipe-person``, ``input-alpha``,
            ``grounded-sam``, optionally suffixed ``+override``.
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


def subject_bbox(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """XYXY pixel box of ``alpha >= 128``.

    Raises:
        `NothingFoundError`: the mask is empty.
    """
    ys, xs = np.nonzero(alpha >= 128)
    if len(xs) == 0:
        raise NothingFoundError("the subject mask is empty")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


class Segmenter(Protocol):
    """A subject-finding backend: the segmentation stage of an engine (`pipelines.engines.bundle.Engine`).

    Attributes:
        kind (`str`): which backend this is (``classic``, ``grounded-sam``); what other stages may ask.
        uses_gpu (`bool`): whether its models may run on a GPU (the batch then guards its calls).
    """

    kind: str
    uses_gpu: bool

    def find_subject(self, image: LoadedImage, product: Product) -> Subject:
        """The subject of ``image`` (the analyst's overrides of ``product`` applied)."""
        ...

    def backends(self) -> dict[str, str]:
        """Its entries of the engine's ``describe()["backends"]`` (``product_segmentation``, ...)."""
        ...

    def models(self) -> list[dict[str, Any]]:
        """The model records it uses besides the classic mediapipe ones (JSON-ready)."""
        ...
