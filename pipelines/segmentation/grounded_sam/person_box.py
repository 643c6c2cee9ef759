"""Whole-person box rejection: when a garment is asked for, a box that covers the whole person is not it.

GroundingDINO, asked for ``"shirt . top ."`` on an on-model photo, sometimes returns a box around the
whole person (the body is the most "shirt-like" region it sees). SAM then segments the person, and the
garment mask is the whole body. This policy drops such boxes:

- it applies only when the prompt names a garment (`is_garment_prompt`: phrases of the ``upper``,
  ``lower``, ``outerwear``, ``shoes``, ``bag`` and ``product`` presets, or the words garment / clothing /
  clothes / apparel), never to full-body garments (``dress``, ``gown``, ``jumpsuit``) or to ``person``;
- the person is found by the same detector (``"person ."``, same thresholds, no retry); without a person
  box nothing is rejected (a flat-lay garment may fill the frame);
- a box is rejected when it covers at least ``cover`` (default `DEFAULT_PERSON_BOX_COVER`, 0.9) of the
  person box's area (intersection over the person box's area).

`reject_whole_person_boxes` returns the kept boxes and a record of each rejected one (for ``--json`` and
manifests). The pipeline turns it off with ``person_box_cover=None``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pipelines.segmentation.prompts import PRESETS

#: A box covering at least this share of the person box is "the whole person".
DEFAULT_PERSON_BOX_COVER = 0.9
#: Presets whose phrases name a garment that never covers the whole person.
GARMENT_PRESETS = ("upper", "lower", "outerwear", "shoes", "bag", "product")
#: Presets whose phrases may legitimately cover the whole person.
FULL_BODY_PRESETS = ("dress", "person")
GENERIC_GARMENT_WORDS = frozenset({"garment", "garments", "clothing", "clothes", "apparel", "upper", "lower"})


def _phrase_sets() -> tuple[set[str], set[str]]:
    garment = {p for name in GARMENT_PRESETS for p in PRESETS[name].phrases}
    full = {p for name in FULL_BODY_PRESETS for p in PRESETS[name].phrases}
    return garment, full


def is_garment_prompt(phrases: Sequence[str]) -> bool:
    """Whether the phrases ask for a garment that cannot be the whole person (see the module docstring)."""
    garment, full = _phrase_sets()
    words = [w for p in phrases for w in re.split(r"[\s\-_/]+", p.lower().strip(" .")) if w]
    norm = [p.lower().strip(" .") for p in phrases]
    if any(p in full for p in norm) or any(w in full for w in words):
        return False
    return any(p in garment for p in norm) or any(w in garment or w in GENERIC_GARMENT_WORDS for w in words)


def box_cover(box: Sequence[float], person: Sequence[float]) -> float:
    """Share of the ``person`` box (XYXY) that ``box`` (XYXY) covers, in [0, 1]."""
    ix = max(0.0, min(box[2], person[2]) - max(box[0], person[0]))
    iy = max(0.0, min(box[3], person[3]) - max(box[1], person[1]))
    area = max(0.0, person[2] - person[0]) * max(0.0, person[3] - person[1])
    return ix * iy / area if area > 0 else 0.0


def reject_whole_person_boxes(detections: list, person_box: Sequence[float] | None, cover: float | None
                              ) -> tuple[list, list[dict[str, Any]]]:
    """Drop the detections whose box covers the whole person.

    Args:
        detections (`list[Detection]`): kept boxes, best first.
        person_box (`Sequence[float] | None`): the person's box, XYXY pixels; `None`: nothing is rejected.
        cover (`float | None`): the share of the person box that makes a box "the whole person", in (0, 1];
            `None` turns the policy off.

    Returns:
        `(kept, rejected)`: the detections kept (order unchanged) and, per rejected one, ``{"box", "score",
        "label", "person_box", "cover", "reason"}``.
    """
    if cover is None or person_box is None or not detections:
        return list(detections), []
    kept, rejected = [], []
    for d in detections:
        c = box_cover(d.box, person_box)
        if c >= cover:
            rejected.append({
                "box": [round(float(v), 2) for v in d.box], "score": round(float(d.score), 4), "label": d.label,
                "person_box": [round(float(v), 2) for v in person_box], "cover": round(c, 4),
                "reason": f"covers {c:.0%} of the person box (>= {cover:.0%}) but a garment was asked for",
            })
        else:
            kept.append(d)
    return kept, rejected
