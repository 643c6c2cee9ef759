"""Embedded person segmentation: mediapipe pose + selfie segmentation, fused and edge-refined.

The classic engine's answer to the prompt "person". Both mediapipe models ship inside the mediapipe
0.10.14 wheel, so nothing is downloaded. Raw mediapipe masks are the baseline; what this module adds
was kept because it measured better on labelled photos (see ``docs/quality.md``):

1. the selfie segmentation model (general, ``model_selection=0``) run on the image and its mirror image,
   averaged (the mirror pass removes one-sided false positives);
2. every person the pose model can find: the pose model finds one person per call, so each person found
   is painted out and the search repeats (up to ``max_persons``); a later person counts only if the selfie
   model agrees with its mask;
3. fusion: the mean of the pose masks (union over persons) and the selfie mask, or the selfie mask alone
   when the pose model found nobody — a pixel needs both models' support;
4. edge refinement: a guided filter (He et al., 2010) with the photo as guide snaps the upsampled
   256-px model masks to the photo's edges (hair, hands, garment hems);
5. keypoint coverage: a confident keypoint that the mask misses pulls in the nearby part of the region
   that either model calls person.

Tried and dropped (no gain on the evaluation photos): the landscape selfie model, averaging both selfie
models, selfie segmentation on per-person crops, GrabCut in a band around the boundary, hole filling,
removing small blobs, drawing limb capsules between keypoints, hysteresis from keypoints.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from pipelines.controls.pose import (
    DEFAULT_MAX_SIDE,
    PoseEstimator,
    PoseResult,
    check_rgb_uint8,
    get_pose_estimator,
    resize_for_inference,
)
from pipelines.errors import InputError, MissingBackendError
from pipelines.native_logs import quiet_native_stderr

logger = logging.getLogger(__name__)

# The selfie model's output is 256x256: the guided filter radius is one upsampling step of that grid.
_MODEL_MASK_SIDE = 256
_FUSION_GAMMA = 1.05


def binarize(mask: np.ndarray, thr: float = 0.5) -> np.ndarray:
    """Threshold a soft mask into a binary one.

    Args:
        mask (`np.ndarray`): HxW soft mask, floating point in [0, 1].
        thr (`float`, *optional*, defaults to 0.5): pixels strictly above ``thr`` are foreground.

    Returns:
        `np.ndarray`: HxW ``uint8``, 255 = foreground, 0 = background.

    Raises:
        InputError: ``mask`` is not a 2-D array or ``thr`` is outside [0, 1].
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"mask must be a 2-D HxW array, got shape {mask.shape}")
    if not 0.0 <= thr <= 1.0:
        raise InputError(f"thr must be in [0, 1], got {thr}", key="thr")
    return np.where(mask > thr, 255, 0).astype(np.uint8)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-preserving smoothing of ``src`` steered by the colour image ``guide`` (He et al., 2010).

    Uses ``cv2.ximgproc.guidedFilter`` when OpenCV's contrib modules are present, else an equivalent
    NumPy implementation (same result to ~1e-6).

    Args:
        guide (`np.ndarray`): HxWx3 ``uint8`` image, values in [0, 255].
        src (`np.ndarray`): HxW ``float32`` map to filter (here a soft mask in [0, 1]).
        radius (`int`): box radius in pixels (window side ``2 * radius + 1``), at least 1.
        eps (`float`): regularisation, in units of the guide normalised to [0, 1]; larger values
            smooth more across weak edges.

    Returns:
        `np.ndarray`: HxW ``float32``, not clipped.
    """
    src = np.ascontiguousarray(src, dtype=np.float32)
    if hasattr(cv2, "ximgproc"):
        return cv2.ximgproc.guidedFilter(guide=guide, src=src, radius=radius, eps=eps * 255.0 * 255.0)
    image = guide.astype(np.float32) / 255.0
    ksize = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, ksize, borderType=cv2.BORDER_REFLECT)

    mean_i = box(image)
    mean_p = box(src)
    cov_ip = box(image * src[..., None]) - mean_i * mean_p[..., None]
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    mr, mg, mb = mean_i[..., 0], mean_i[..., 1], mean_i[..., 2]
    v_rr = box(r * r) - mr * mr + eps
    v_rg = box(r * g) - mr * mg
    v_rb = box(r * b) - mr * mb
    v_gg = box(g * g) - mg * mg + eps
    v_gb = box(g * b) - mg * mb
    v_bb = box(b * b) - mb * mb + eps
    # inverse of the symmetric 3x3 covariance via cofactors
    i_rr = v_gg * v_bb - v_gb * v_gb
    i_rg = v_gb * v_rb - v_rg * v_bb
    i_rb = v_rg * v_gb - v_gg * v_rb
    i_gg = v_rr * v_bb - v_rb * v_rb
    i_gb = v_rb * v_rg - v_rr * v_gb
    i_bb = v_rr * v_gg - v_rg * v_rg
    det = v_rr * i_rr + v_rg * i_rg + v_rb * i_rb
    c0, c1, c2 = cov_ip[..., 0], cov_ip[..., 1], cov_ip[..., 2]
    a0 = (i_rr * c0 + i_rg * c1 + i_rb * c2) / det
    a1 = (i_rg * c0 + i_gg * c1 + i_gb * c2) / det
    a2 = (i_rb * c0 + i_gb * c1 + i_bb * c2) / det
    offset = mean_p - a0 * mr - a1 * mg - a2 * mb
    return box(a0) * r + box(a1) * g + box(a2) * b + box(offset)


class SelfieSegmenter:
    """mediapipe SelfieSegmentation (legacy ``mp.solutions`` API), thread-safe, graph built on first use.

    Args:
        model_selection (`int`, *optional*, defaults to 0): 0 = the general model (256x256 input),
            1 = the landscape model (144x256). Both ship in the mediapipe wheel.
    """

    def __init__(self, model_selection: int = 0):
        if model_selection not in (0, 1):
            raise InputError(f"model_selection must be 0 or 1, got {model_selection}", key="model_selection")
        self.model_selection = model_selection
        self._lock = threading.Lock()
        self._model: Any = None

    def _get_model(self) -> Any:
        if self._model is None:
            try:
                import mediapipe as mp
            except ImportError as err:  # pragma: no cover - mediapipe is a core dependency
                raise MissingBackendError(
                    "mediapipe selfie segmentation", "pip install mediapipe==0.10.14"
                ) from err
            logger.debug(
                "building the mediapipe SelfieSegmentation graph (model_selection=%d)", self.model_selection
            )
            self._model = mp.solutions.selfie_segmentation.SelfieSegmentation(
                model_selection=self.model_selection
            )
        return self._model

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Segment the people in ``image``.

        Args:
            image (`np.ndarray`): HxWx3 ``uint8`` RGB.

        Returns:
            `np.ndarray`: HxW ``float32`` person probability in [0, 1], at the input's resolution.
        """
        image = check_rgb_uint8(image)
        with self._lock, quiet_native_stderr():  # TFLite/absl lines go to fd 2 (pipelines/native_logs.py)
            mask = self._get_model().process(image).segmentation_mask
        mask = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
        if mask.shape != image.shape[:2]:
            mask = cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        return mask

    def close(self) -> None:
        """Release the mediapipe graph (it is rebuilt on the next call)."""
        with self._lock:
            if self._model is not None:
                self._model.close()
                self._model = None


@functools.cache
def get_selfie_segmenter(model_selection: int = 0) -> SelfieSegmenter:
    """The process-wide :class:`SelfieSegmenter` for ``model_selection`` (0 general, 1 landscape)."""
    return SelfieSegmenter(model_selection)


@dataclass
class PersonSegmentation:
    """Output of :class:`PersonSegmenter`.

    Args:
        mask (`np.ndarray`): HxW ``float32`` soft person mask in [0, 1], at the input's resolution.
        poses (`list[PoseResult]`): the people the pose model found, most confident first, keypoints in
            pixels of the input image. Empty when it found nobody (the mask then comes from the selfie
            model alone).
    """

    mask: np.ndarray
    poses: list[PoseResult] = field(default_factory=list)


class PersonSegmenter:
    """Segment every person in a photo by fusing mediapipe's pose and selfie segmentation masks.

    See the module docstring for the steps. Components are passed in (or shared per process by default).

    Args:
        pose_estimator (`PoseEstimator`, *optional*): defaults to :func:`get_pose_estimator`.
        selfie_segmenter (`SelfieSegmenter`, *optional*): defaults to ``get_selfie_segmenter(0)``.
        max_persons (`int`, *optional*, defaults to 5): how many people the pose search looks for (>= 1).
        max_side (`int`, *optional*, defaults to 1024): the models run on the image downscaled to this
            longer side; the mask is returned at full resolution.
        refine_max_side (`int`, *optional*, defaults to 2048): the guided-filter edge refinement runs at
            up to this longer side; larger images get the refined mask upsampled bilinearly.
        refine_eps (`float`, *optional*, defaults to 1e-2): guided-filter regularisation (see
            :func:`guided_filter`); 0 disables the refinement.
        person_agreement (`float`, *optional*, defaults to 0.5): a person found after the first counts
            only if the selfie mask's mean inside its pose mask reaches this, in [0, 1].
        keypoint_score (`float`, *optional*, defaults to 0.5): keypoints at or above this score must be
            covered by the mask (see step 5), in [0, 1].
        coverage_radius (`float`, *optional*, defaults to 0.2): how far around a missed keypoint the mask
            may grow, as a fraction of the person's keypoint extent.
    """

    def __init__(
        self,
        pose_estimator: PoseEstimator | None = None,
        selfie_segmenter: SelfieSegmenter | None = None,
        *,
        max_persons: int = 5,
        max_side: int = DEFAULT_MAX_SIDE,
        refine_max_side: int = 2048,
        refine_eps: float = 1e-2,
        person_agreement: float = 0.5,
        keypoint_score: float = 0.5,
        coverage_radius: float = 0.2,
    ):
        if max_persons < 1:
            raise InputError(f"max_persons must be at least 1, got {max_persons}", key="max_persons")
        if max_side < 64 or refine_max_side < 64:
            raise InputError(
                f"max_side and refine_max_side must be at least 64, got {max_side} and {refine_max_side}",
                key="max_side",
            )
        for name, value in (
            ("person_agreement", person_agreement),
            ("keypoint_score", keypoint_score),
            ("coverage_radius", coverage_radius),
        ):
            if not 0.0 <= value <= 1.0:
                raise InputError(f"{name} must be in [0, 1], got {value}", key=name)
        if refine_eps < 0:
            raise InputError(f"refine_eps must be >= 0, got {refine_eps}", key="refine_eps")
        self.pose_estimator = pose_estimator
        self.selfie_segmenter = selfie_segmenter
        self.max_persons = max_persons
        self.max_side = max_side
        self.refine_max_side = refine_max_side
        self.refine_eps = refine_eps
        self.person_agreement = person_agreement
        self.keypoint_score = keypoint_score
        self.coverage_radius = coverage_radius

    # -- components ---------------------------------------------------------------------------------
    def _pose(self) -> PoseEstimator:
        return self.pose_estimator if self.pose_estimator is not None else get_pose_estimator()

    def _selfie(self) -> SelfieSegmenter:
        return self.selfie_segmenter if self.selfie_segmenter is not None else get_selfie_segmenter(0)

    # -- steps --------------------------------------------------------------------------------------
    def selfie_mask(self, image: np.ndarray) -> np.ndarray:
        """The selfie model's mask of ``image`` averaged with that of its mirror image.

        Returns:
            `np.ndarray`: HxW ``float32`` in [0, 1].
        """
        selfie = self._selfie()
        direct = selfie(image)
        mirrored = selfie(np.ascontiguousarray(image[:, ::-1]))[:, ::-1]
        return (direct + mirrored) * 0.5

    def find_people(self, image: np.ndarray, selfie: np.ndarray) -> list[tuple[PoseResult, np.ndarray]]:
        """Find up to ``max_persons`` people with the pose model, painting out each one found.

        Args:
            image (`np.ndarray`): HxWx3 ``uint8`` RGB (already at working resolution).
            selfie (`np.ndarray`): HxW ``float32`` selfie mask of ``image``, used to reject doubtful people.

        Returns:
            `list[tuple[PoseResult, np.ndarray]]`: each person's pose and pose-model mask (HxW ``float32``).
        """
        estimator = self._pose()
        height, width = image.shape[:2]
        work = image.copy()
        fill = np.median(image.reshape(-1, 3), axis=0).astype(np.uint8)
        grow = max(3, round(0.03 * max(height, width)))
        kernel = np.ones((grow, grow), np.uint8)
        people: list[tuple[PoseResult, np.ndarray]] = []
        for attempt in range(self.max_persons):
            pose, mask = estimator.estimate(work)
            if not pose.found or mask is None:
                break
            inside = mask > 0.5
            agreement = float(selfie[inside].mean()) if inside.any() else 0.0
            if attempt == 0 or agreement >= self.person_agreement:
                people.append((pose, mask))
            else:
                logger.debug("pose pass %d: person rejected (selfie agreement %.2f)", attempt, agreement)
            # paint the person out so that the next pass finds someone else
            region = (mask > 0.1).astype(np.uint8)
            confident = pose.keypoints[pose.keypoints[:, 2] > 0.3, :2]
            if len(confident) >= 3:
                hull = cv2.convexHull(np.round(confident).astype(np.int32))
                cv2.fillConvexPoly(region, hull, 1)
            region = cv2.dilate(region, kernel) > 0
            work[region] = fill
        return people

    def _cover_keypoints(
        self, binary: np.ndarray, support: np.ndarray, keypoint_sets: list[np.ndarray]
    ) -> np.ndarray:
        """Pixels to add so that confident keypoints lie inside the mask (HxW ``bool``)."""
        height, width = binary.shape
        count, labels = cv2.connectedComponents(support.astype(np.uint8), connectivity=8)
        added = np.zeros_like(binary)
        if count <= 1:
            return added
        for keypoints in keypoint_sets:
            confident = keypoints[keypoints[:, 2] >= self.keypoint_score]
            if len(confident) < 2:
                continue
            extent = max(float(np.ptp(confident[:, 0])), float(np.ptp(confident[:, 1])), 1.0)
            radius = max(3, round(self.coverage_radius * extent))
            for x, y, _ in confident:
                xi, yi = int(np.clip(x, 0, width - 1)), int(np.clip(y, 0, height - 1))
                label = labels[yi, xi]
                if binary[yi, xi] or added[yi, xi] or label == 0:
                    continue
                # the disk's bounding box only: full-frame temporaries would cost O(H*W) per keypoint
                y0, y1 = max(0, yi - radius), min(height, yi + radius + 1)
                x0, x1 = max(0, xi - radius), min(width, xi + radius + 1)
                disk = np.zeros((y1 - y0, x1 - x0), np.uint8)
                cv2.circle(disk, (xi - x0, yi - y0), radius, 1, thickness=-1)
                added[y0:y1, x0:x1] |= (disk > 0) & (labels[y0:y1, x0:x1] == label)
        return added

    def __call__(self, image: np.ndarray, *, pose: PoseResult | None = None) -> PersonSegmentation:
        """Segment every person in ``image``.

        Args:
            image (`np.ndarray`): HxWx3 ``uint8`` RGB, values in [0, 255].
            pose (`PoseResult`, *optional*): keypoints already found for this image (e.g. by another
                pose detector). Its confident keypoints must lie inside the mask, like those found here.

        Returns:
            `PersonSegmentation`: the HxW ``float32`` soft mask in [0, 1] and the poses found.

        Raises:
            InputError: ``image`` is not HxWx3 ``uint8``, or ``pose`` refers to an image of another size.
        """
        # 1. Check inputs
        image = check_rgb_uint8(image)
        height, width = image.shape[:2]
        if pose is not None and (pose.width, pose.height) != (width, height):
            raise InputError(
                f"pose is for a {pose.width}x{pose.height} image but the image is {width}x{height}",
                key="pose",
            )

        # 2. Work at model resolution
        work = resize_for_inference(image, self.max_side)
        work_h, work_w = work.shape[:2]
        sx, sy = work_w / width, work_h / height

        # 3. Selfie mask (with its mirror pass) and every person the pose model finds
        selfie = self.selfie_mask(work)
        people = self.find_people(work, selfie)

        # 4. Fuse: both models must support a pixel; selfie alone when the pose model found nobody
        if people:
            pose_mask = np.max(np.stack([mask for _, mask in people]), axis=0)
            # a gamma just above 1 keeps one-model plateaus (mean exactly 0.5) below any 0.5 threshold,
            # whether callers binarize with > or >=, while full agreement stays 1
            fused = np.power((pose_mask + selfie) * 0.5, _FUSION_GAMMA)
            support = np.maximum(pose_mask, selfie) > 0.5
        else:
            fused = selfie
            support = selfie > 0.5

        # 5. Refine edges against the photo with a guided filter, at up to refine_max_side
        refine = (
            work if (work_h, work_w) == (height, width) else resize_for_inference(image, self.refine_max_side)
        )
        ref_h, ref_w = refine.shape[:2]
        if (ref_h, ref_w) != (work_h, work_w):
            fused = cv2.resize(fused, (ref_w, ref_h), interpolation=cv2.INTER_LINEAR)
            support = (
                cv2.resize(support.astype(np.uint8), (ref_w, ref_h), interpolation=cv2.INTER_NEAREST) > 0
            )
        if self.refine_eps > 0:
            radius = max(1, round(max(ref_h, ref_w) / _MODEL_MASK_SIDE))
            fused = guided_filter(refine, fused, radius, self.refine_eps)
        fused = np.clip(fused, 0.0, 1.0).astype(np.float32)

        # 6. Confident keypoints must lie inside the mask
        keypoint_sets = [
            p.keypoints * np.array([ref_w / work_w, ref_h / work_h, 1.0], np.float32) for p, _ in people
        ]
        if pose is not None and pose.found:
            keypoint_sets.append(pose.keypoints * np.array([ref_w / width, ref_h / height, 1.0], np.float32))
        added = self._cover_keypoints(fused > 0.5, support, keypoint_sets)
        if added.any():
            logger.debug("keypoint coverage added %d pixels", int(added.sum()))
            fused[added] = np.maximum(fused[added], 0.75)

        # 7. Back to full resolution; poses in full-resolution pixels
        if (ref_h, ref_w) != (height, width):
            fused = np.clip(cv2.resize(fused, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
        poses = []
        for person, _ in people:
            keypoints = person.keypoints.copy()
            keypoints[:, 0] /= sx
            keypoints[:, 1] /= sy
            poses.append(PoseResult(width=width, height=height, keypoints=keypoints))
        return PersonSegmentation(mask=fused, poses=poses)


@functools.cache
def get_person_segmenter() -> PersonSegmenter:
    """The process-wide :class:`PersonSegmenter` with default settings (models shared per process)."""
    return PersonSegmenter()


def segment_person(image: np.ndarray, *, pose: PoseResult | None = None) -> np.ndarray:
    """Soft mask of every person in ``image`` (the classic engine's "person" segmentation).

    Args:
        image (`np.ndarray`): HxWx3 ``uint8`` RGB, values in [0, 255].
        pose (`PoseResult`, *optional*): keypoints already found for this image; its confident keypoints
            are kept inside the mask.

    Returns:
        `np.ndarray`: HxW ``float32`` in [0, 1]; :func:`binarize` turns it into a ``uint8`` 0/255 mask.

    Raises:
        InputError: ``image`` is not an HxWx3 ``uint8`` array.
    """
    return get_person_segmenter()(image, pose=pose).mask


def mediapipe_baseline_masks(image: np.ndarray) -> dict[str, np.ndarray]:
    """The raw mediapipe masks this module improves on, for benchmarks.

    Args:
        image (`np.ndarray`): HxWx3 ``uint8`` RGB.

    Returns:
        `dict[str, np.ndarray]`: ``"selfie"`` (general selfie model, one pass) and ``"pose"`` (the pose
        model's mask of the one person it finds; all zeros when none), each HxW ``float32`` in [0, 1] at
        the input's resolution, models run at up to 1024 px.
    """
    image = check_rgb_uint8(image)
    height, width = image.shape[:2]
    work = resize_for_inference(image, DEFAULT_MAX_SIDE)
    selfie = get_selfie_segmenter(0)(work)
    _, pose_mask = get_pose_estimator().estimate(work)
    if pose_mask is None:
        pose_mask = np.zeros(work.shape[:2], np.float32)
    out = {"selfie": selfie, "pose": pose_mask}
    if work.shape[:2] != (height, width):
        out = {k: cv2.resize(v, (width, height), interpolation=cv2.INTER_LINEAR) for k, v in out.items()}
    return out
