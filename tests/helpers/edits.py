"""A deterministic stand-in for the Kontext editor, for catalog tests of edit versions."""

from __future__ import annotations

import numpy as np

from pipelines.edit.kontext import EditOutput


class WarmerEditor:
    """A stand-in for Kontext: every pixel a little warmer (red +9, blue -9), at the input's exact size."""

    model_id = "black-forest-labs/FLUX.1-Kontext-dev"

    def __call__(self, image, prompt, *, seed, params, reference=None):
        out = image.astype(np.int16)
        out[..., 0] += 9
        out[..., 2] -= 9
        return EditOutput(image=np.clip(out, 0, 255).astype(np.uint8), model_output=image,
                          record={"instruction": prompt, "seed": seed, "fake": True})
