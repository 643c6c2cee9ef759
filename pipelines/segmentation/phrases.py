"""What a text prompt for GroundingDINO is made of: its phrases (`split_phrases`) and the default
``box_threshold`` / ``text_threshold`` (what they mean: `pipelines.segmentation.grounded_sam.detection`).

Shared by the prompt presets (`pipelines.segmentation.prompts`) and the detector (`grounded_sam`), below both.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.errors import InputError

#: Default thresholds (the GroundingDINO demos' values); product.yaml and presets override them.
DEFAULT_BOX_THRESHOLD = 0.35
DEFAULT_TEXT_THRESHOLD = 0.25


def split_phrases(prompt: str | Sequence[str]) -> list[str]:
    """Split a prompt into GroundingDINO phrases: ``"shirt. t-shirt."`` -> ``["shirt", "t-shirt"]``.

    Phrases are separated by ``.``; each is lower-cased and stripped; empty ones and repeats are dropped.

    Raises:
        `InputError`: when no phrase is left.
    """
    parts = [prompt] if isinstance(prompt, str) else list(prompt)
    phrases: list[str] = []
    for part in parts:
        for raw in str(part).split("."):
            p = " ".join(raw.lower().split())
            if p and p not in phrases:
                phrases.append(p)
    if not phrases:
        raise InputError(f"the prompt {prompt!r} names nothing to segment", key="prompt")
    return phrases
