"""The ``tryon`` key of ``product.yaml``: how a try-on SKU (a person photo plus garment photos) is made.

Kept free of other Vitrine imports: `pipelines.product` imports it to validate ``product.yaml``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

TryOnMethod = Literal["auto", "fill", "kontext", "warp"]
GarmentPixels = Literal["composite", "generated"]


class TryOnSpec(BaseModel):
    """Try-on settings (``product.yaml`` key ``tryon``). Every key is optional.

    A product folder is a try-on SKU when it holds a person photo (``person.jpg|jpeg|png|webp``, any case)
    and at least one other image (the garment photos); the ``tryon`` key is not needed for that.

    Args:
        method (`str`, *optional*, defaults to ``"auto"``): ``fill`` (garment and person side by side on
            one canvas, FLUX.1 Fill fills the masked clothes: the CatVTON-Flux approach), ``kontext``
            (FLUX.1 Kontext with the garment as a reference image), ``warp`` (pose-guided geometric warp of
            the garment photo onto the body, composited and seam-inpainted; needs no weights), or ``auto``:
            ``fill`` when FLUX.1 Fill is found, else ``kontext`` when FLUX.1 Kontext is found, else ``warp``
            (always ``warp`` for a commercial SKU: Fill-dev and Kontext-dev are non-commercial).
        person (`str`, *optional*): the person photo's file name; defaults to the one named ``person.*``.
        garments (`list[str]`, *optional*): the garment photos' file names; defaults to every other image.
        prompt (`str`, *optional*): extra words for the generative methods (e.g. ``"tucked in"``).
        garment_pixels (`str`, *optional*, defaults to ``"composite"``): ``composite`` pastes the garment
            as placed over the generated result (its pixels are then the photo's, bit for bit, inside the
            eroded garment mask); ``generated`` keeps the model's own rendering of the garment (only the
            fidelity score says how close it is).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    method: TryOnMethod = "auto"
    person: Annotated[str, Field(min_length=1)] | None = None
    garments: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    prompt: str | None = None
    garment_pixels: GarmentPixels = "composite"
