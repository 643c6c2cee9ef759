"""The parameters of a catalog render (`RenderOptions`), recorded in every manifest and content hash."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class RenderOptions:
    """Parameters of a catalog render. Every field is recorded in the manifest and in the content hash.

    Attributes:
        canvas (`int`, defaults to 2000): side of the square main image, pixels.
        fill (`float`, defaults to 0.85): product's longer side over the canvas side (marketplace rule ~85%).
        lifestyle_size (`tuple[int, int]`, defaults to (1600, 2000)): (width, height) of lifestyle images.
        lifestyle_fill (`float`, defaults to 0.78): product fill on lifestyle images.
        preserve_erode_px (`int`, defaults to 3): the preserve mask is the opaque product eroded by this.
        seam_inner_px (`int`, defaults to 3): seam band reach into the product (<= preserve_erode_px).
        seam_outer_px (`int`, defaults to 4): seam band reach into the background.
        max_input_side (`int`, defaults to 4096): larger photos are downscaled to this longer side.
        jpeg_quality (`int`, defaults to 92): quality of the JPEG export of the main image.
        export_webp (`bool`, defaults to `False`): also write a lossy WebP of every image.
        png_compress_level (`int`, defaults to 1): zlib level of PNG outputs (1 = fast, 9 = small).
        identity (`dict`, *optional*): the batch's model identity preset (`pipelines.edit.identity`,
            ``IdentityPreset.to_json()``): its seed and prompt replace every SKU's ``seeds`` and
            ``prompts.person``, so one model identity is reused across the batch.
        commercial (`bool`, defaults to `False`): the whole batch is for commercial use: every SKU is treated
            as ``commercial: true`` (non-commercial models are refused; `pipelines.models.licence`).
        max_upscale (`float`, defaults to 8.0): a SKU fails, naming the photo and its size, when an output
            would enlarge its photo more than this; above 2x the output is flagged ``upscaled``
            (`pipelines.quality.flags`).
    """

    canvas: int = 2000
    fill: float = 0.85
    lifestyle_size: tuple[int, int] = (1600, 2000)
    lifestyle_fill: float = 0.78
    preserve_erode_px: int = 3
    seam_inner_px: int = 3
    seam_outer_px: int = 4
    max_input_side: int = 4096
    jpeg_quality: int = 92
    export_webp: bool = False
    png_compress_level: int = 1
    identity: dict[str, Any] | None = None
    commercial: bool = False
    max_upscale: float = 8.0

    def __post_init__(self) -> None:
        if not self.max_upscale >= 1.0:
            raise ValueError(f"max_upscale must be at least 1.0, got {self.max_upscale}")
        if self.seam_inner_px > self.preserve_erode_px:
            raise ValueError(
                f"seam_inner_px ({self.seam_inner_px}) must not exceed preserve_erode_px ({self.preserve_erode_px}):"
                " the seam band would reach into the preserved product pixels"
            )
        if not 0 < self.fill <= 1 or not 0 < self.lifestyle_fill <= 1:
            raise ValueError("fill and lifestyle_fill must be in (0, 1]")

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}
