"""From GroundingDINO's raw outputs to boxes: ``box_threshold``, ``text_threshold``, retries and policies.

Everything here is pure numpy, shared by every detector backend, so that the meaning of each threshold is
defined (and tested) once. GroundingDINO scores every (query box, prompt token) pair:

- ``box_threshold`` tests **boxes**. A box's score is the highest probability it gives to any position of
  the caption, structural tokens (``[CLS]``, ``[SEP]``, the ``.`` separators) included, exactly as upstream
  GroundingDINO (``logits.sigmoid().max(dim=1)``) and transformers' ``post_process_grounded_object_detection``
  score boxes (the models give positions past the caption probability 0). A box is kept when its score is **greater than**
  ``box_threshold``.
- ``text_threshold`` tests **tokens**. A phrase of the prompt is attached to a kept box when one of its
  tokens has a probability **greater than** ``text_threshold``; the box's ``label`` is the attached phrase
  with the highest token probability, ``phrases`` lists every attached phrase and ``words`` the tokens above
  ``text_threshold`` (the original demo's label). A box with no phrase attached cannot be told apart from
  noise and is dropped.

Consequence: with ``text_threshold <= box_threshold`` (the defaults, 0.25 <= 0.35) every kept box has its
best token above ``text_threshold``, so ``text_threshold`` only decides which phrases and words a box is
attributed to; set it above ``box_threshold`` to also demand a confident phrase match. This is the original
GroundingDINO rule (``logits.max() > box_threshold`` keeps a box, tokens ``> text_threshold`` make its phrase)
with one deliberate difference: a box whose phrase would be empty (e.g. one that only a ``.`` or ``[SEP]``
position lifted above ``box_threshold``) is dropped instead of returned unlabelled.

Which token ids are structural (``[CLS]``, ``[SEP]``, padding, ``.``, ``?``) is read from the detector's
tokenizer (`structural_ids`), as upstream does with ``tokenizer.convert_tokens_to_ids``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pipelines.errors import InputError

#: bert-base-uncased ids GroundingDINO treats as structure, not words: [CLS], [SEP], ".", "?" (the defaults
#: of `phrase_spans` only; the backends read the ids from their tokenizer with `structural_ids`).
SPECIAL_TOKEN_IDS = frozenset({101, 102, 1012, 1029})
#: Token ids that separate phrases (bert-base-uncased).
SEPARATOR_TOKEN_IDS = frozenset({1012, 1029})
#: Padding id (bert-base-uncased).
PAD_TOKEN_ID = 0


@dataclass(frozen=True)
class StructuralIds:
    """Token ids that are caption structure, not words.

    Attributes:
        separators (`frozenset[int]`): ids that end a phrase (``.`` and ``?``).
        boundaries (`frozenset[int]`): ``[CLS]``, ``[SEP]`` and padding: never part of a phrase.
    """

    separators: frozenset[int]
    boundaries: frozenset[int]


#: bert-base-uncased's structural ids (what `structural_ids` reads from its tokenizer).
BERT_STRUCTURAL_IDS = StructuralIds(SEPARATOR_TOKEN_IDS, frozenset({101, 102, PAD_TOKEN_ID}))


def structural_ids(tokenizer) -> StructuralIds:
    """The structural ids of a (BERT-style) tokenizer: its ``.``/``?`` ids and CLS/SEP/PAD ids.

    As upstream GroundingDINO: ``tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", ".", "?"])``, using the
    tokenizer's own ``cls_token_id``/``sep_token_id``/``pad_token_id`` when it has them.

    Raises:
        `InputError`: the tokenizer has no id for ``.`` (GroundingDINO captions need it).
    """
    def tid(token: str) -> int | None:
        v = tokenizer.convert_tokens_to_ids(token)
        unk = getattr(tokenizer, "unk_token_id", None)
        return None if v is None or (unk is not None and v == unk and token != tokenizer.unk_token) else int(v)

    separators = {i for i in (tid("."), tid("?")) if i is not None}
    if tid(".") is None:
        raise InputError("the detector's tokenizer has no token '.' (GroundingDINO separates phrases with it)",
                         key="tokenizer")
    boundaries = set()
    for attr, token in (("cls_token_id", "[CLS]"), ("sep_token_id", "[SEP]"), ("pad_token_id", "[PAD]")):
        v = getattr(tokenizer, attr, None)
        v = int(v) if v is not None else tid(token)
        if v is not None:
            boundaries.add(v)
    return StructuralIds(frozenset(separators), frozenset(boundaries))

Policy = Literal["merge", "best", "largest"]
POLICIES: tuple[str, ...] = ("merge", "best", "largest")

#: Each retry multiplies both thresholds by the next factor ...
RELAX_FACTORS: tuple[float, ...] = (0.75, 0.5)
#: ... but never takes them below this floor (a threshold already below it is kept as it is).
RELAX_FLOOR = 0.05
#: Boxes overlapping a higher-scoring box of the same phrase by more than this IoU are duplicates.
NMS_IOU = 0.8
#: At most this many boxes go on to the mask model.
MAX_BOXES = 20


@dataclass
class DetectorOutput:
    """Raw GroundingDINO output for one image and one caption (backend independent).

    Attributes:
        token_probs (`np.ndarray`): ``(Q, T)`` float32, sigmoid of the logits of each query for each token
            position (positions past the caption are 0).
        boxes_cxcywh (`np.ndarray`): ``(Q, 4)`` float32, box centre x, centre y, width, height as fractions of
            the image width/height.
        spans (`list[list[int]]`): token positions of each phrase of the caption, in caption order.
        phrases (`list[str]`): the phrases, one per span.
        image_size (`tuple[int, int]`): ``(width, height)`` of the image in pixels.
        tokens (`list[str]`, *optional*): the decoded token at each position (for `Detection.words`).
    """

    token_probs: np.ndarray
    boxes_cxcywh: np.ndarray
    spans: list[list[int]]
    phrases: list[str]
    image_size: tuple[int, int]
    tokens: list[str] | None = None


@dataclass
class Detection:
    """One box that passed both thresholds.

    Attributes:
        box (`tuple[float, float, float, float]`): XYXY in pixels of the input image, clipped to it.
        score (`float`): the box score (highest probability over the caption's positions), what
            ``box_threshold`` tests.
        label (`str`): the phrase the box is attributed to: of the phrases with a token above
            ``text_threshold``, the one with the highest token probability.
        phrase_index (`int`): index of ``label`` in the prompt's phrases.
        text_score (`float`): the highest token probability within ``label``.
        query (`int`): the detector query it came from.
        phrases (`tuple[str, ...]`): every phrase with a token above ``text_threshold``.
        words (`str`): the tokens above ``text_threshold``, decoded: the original demo's label.
    """

    box: tuple[float, float, float, float]
    score: float
    label: str
    phrase_index: int
    text_score: float
    query: int
    phrases: tuple[str, ...] = ()
    words: str = ""

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    def to_json(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "label": self.label,
            "text_score": round(float(self.text_score), 4),
            "phrases": list(self.phrases),
            "words": self.words,
        }


@dataclass
class Selection:
    """What one pass of `select_detections` kept and why it dropped the rest."""

    detections: list[Detection]
    box_threshold: float
    text_threshold: float
    below_box_threshold: int = 0
    below_text_threshold: int = 0
    degenerate: int = 0
    duplicates: int = 0
    over_limit: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "box_threshold": round(self.box_threshold, 4),
            "text_threshold": round(self.text_threshold, 4),
            "kept": len(self.detections),
            "below_box_threshold": self.below_box_threshold,
            "below_text_threshold": self.below_text_threshold,
            "degenerate": self.degenerate,
            "duplicates": self.duplicates,
            "over_limit": self.over_limit,
        }


@dataclass
class Grounding:
    """The result of grounding a prompt: every attempt, and the detections of the first that kept any."""

    attempts: list[Selection] = field(default_factory=list)

    @property
    def detections(self) -> list[Detection]:
        return self.attempts[-1].detections if self.attempts else []

    @property
    def found(self) -> bool:
        return bool(self.detections)

    @property
    def relaxed(self) -> bool:
        return self.found and len(self.attempts) > 1


# --------------------------------------------------------------------------------------------------
# Prompts and tokens
# --------------------------------------------------------------------------------------------------


def caption_for(phrases: Sequence[str]) -> str:
    """GroundingDINO's caption form: ``"shirt . t-shirt ."`` (lower case, each phrase ended by ``" ."``)."""
    return " ".join(f"{p} ." for p in phrases)


def phrase_spans(input_ids: Sequence[int], structure: StructuralIds = BERT_STRUCTURAL_IDS) -> list[list[int]]:
    """Token positions of each phrase: runs of non-structural tokens between separators.

    Args:
        input_ids (`Sequence[int]`): the caption's token ids.
        structure (`StructuralIds`, *optional*): from `structural_ids` of the detector's tokenizer;
            defaults to bert-base-uncased's.
    """
    spans: list[list[int]] = []
    current: list[int] = []
    for pos, tid in enumerate(int(t) for t in input_ids):
        if tid in structure.separators or tid in structure.boundaries:
            if current:
                spans.append(current)
                current = []
            continue
        current.append(pos)
    if current:
        spans.append(current)
    return spans


def match_spans(spans: list[list[int]], phrases: Sequence[str], decoded: Sequence[str]) -> list[str]:
    """Name each span: the requested phrase when the counts agree, else the decoded tokens."""
    if len(spans) == len(phrases):
        return list(phrases)
    return [d.strip() for d in decoded]


# --------------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------------


def check_threshold(name: str, value: float) -> float:
    """``value`` as a float in [0, 1], or an `InputError` naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number in [0, 1], got {value!r}", key=name) from None
    if not 0.0 <= v <= 1.0:  # also refuses NaN
        raise InputError(f"{name} must be in [0, 1], got {value!r}", key=name)
    return v


def relaxed_thresholds(box_threshold: float, text_threshold: float, *, retry: bool = True,
                       factors: Sequence[float] = RELAX_FACTORS, floor: float = RELAX_FLOOR,
                       ) -> list[tuple[float, float]]:
    """The ``(box_threshold, text_threshold)`` pairs to try, in order, without repeats.

    The first pair is the requested one. With ``retry``, each factor gives a relaxed pair: both thresholds
    multiplied by it, but never taken below ``floor`` (a requested value already below ``floor`` stays).
    """
    pairs = [(box_threshold, text_threshold)]
    if retry:
        for f in factors:
            pair = (max(box_threshold * f, min(box_threshold, floor)),
                    max(text_threshold * f, min(text_threshold, floor)))
            if all(abs(pair[0] - p[0]) > 1e-9 or abs(pair[1] - p[1]) > 1e-9 for p in pairs):
                pairs.append(pair)
    return pairs


def _box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def cxcywh_to_xyxy_pixels(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """``(N, 4)`` relative centre/size boxes to XYXY pixels of an image of ``(width, height)``, clipped."""
    w, h = image_size
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    xyxy = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)
    xyxy *= np.array([w, h, w, h], dtype=np.float64)
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, w)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, h)
    return xyxy


def select_detections(raw: DetectorOutput, box_threshold: float, text_threshold: float, *,
                      nms_iou: float | None = NMS_IOU, max_boxes: int = MAX_BOXES) -> Selection:
    """Apply ``box_threshold`` and ``text_threshold`` (see the module docstring) to one detector output.

    Args:
        raw (`DetectorOutput`): the detector's output.
        box_threshold (`float`): a box is kept when its box score is greater than this, in [0, 1].
        text_threshold (`float`): a phrase is attached to a kept box when one of its tokens has a
            probability greater than this, in [0, 1]; boxes with no phrase attached are dropped.
        nms_iou (`float`, *optional*, defaults to 0.8): drop a box overlapping a higher-scoring box with the
            same label by more than this IoU; ``None`` keeps duplicates.
        max_boxes (`int`, *optional*, defaults to 20): keep at most this many boxes (highest scores).

    Returns:
        `Selection`: detections sorted by box score (highest first) and counts of what was dropped.
    """
    sel = Selection([], box_threshold, text_threshold)
    probs = np.asarray(raw.token_probs, dtype=np.float32)
    spans = [s for s in raw.spans if s]
    if probs.ndim != 2 or not spans:
        return sel
    positions = sorted({p for s in spans for p in s if p < probs.shape[1]})
    if not positions:
        return sel
    boxes = cxcywh_to_xyxy_pixels(raw.boxes_cxcywh, raw.image_size)
    box_scores = probs.max(axis=1)  # every position, as upstream and transformers (module docstring)
    candidates: list[Detection] = []
    for q in np.argsort(-box_scores, kind="stable"):
        q = int(q)
        if not box_scores[q] > box_threshold:
            sel.below_box_threshold += 1
            continue
        best_phrase, best_text, attached = -1, -1.0, []
        for i, span in enumerate(spans):
            span_probs = probs[q, [p for p in span if p < probs.shape[1]]]
            top = float(span_probs.max()) if span_probs.size else 0.0
            if top > text_threshold:
                attached.append(i)
                if top > best_text:
                    best_phrase, best_text = i, top
        if best_phrase < 0:
            sel.below_text_threshold += 1
            continue
        x0, y0, x1, y1 = (float(v) for v in boxes[q])
        if x1 - x0 < 1.0 or y1 - y0 < 1.0:
            sel.degenerate += 1
            continue
        names = [raw.phrases[i] if i < len(raw.phrases) else "" for i in attached]
        words = " ".join(raw.tokens[p] for p in positions if probs[q, p] > text_threshold) if raw.tokens else ""
        candidates.append(Detection((x0, y0, x1, y1), float(box_scores[q]), names[attached.index(best_phrase)],
                                    best_phrase, best_text, q, tuple(names), words.replace(" ##", "")))
    kept: list[Detection] = []
    for det in candidates:  # already in descending score order
        if nms_iou is not None and any(k.phrase_index == det.phrase_index and _box_iou(k.box, det.box) > nms_iou
                                       for k in kept):
            sel.duplicates += 1
            continue
        if len(kept) >= max_boxes:
            sel.over_limit += 1
            continue
        kept.append(det)
    sel.detections = kept
    return sel


def ground(raw: DetectorOutput, box_threshold: float, text_threshold: float, *, retry: bool = True,
           nms_iou: float | None = NMS_IOU, max_boxes: int = MAX_BOXES) -> Grounding:
    """`select_detections` at the requested thresholds, then (with ``retry``) at relaxed ones until a box survives.

    The detector runs once; only the selection is repeated, so retries cost no model time.
    """
    result = Grounding()
    for bt, tt in relaxed_thresholds(box_threshold, text_threshold, retry=retry):
        sel = select_detections(raw, bt, tt, nms_iou=nms_iou, max_boxes=max_boxes)
        result.attempts.append(sel)
        if sel.detections:
            break
    return result


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise InputError(f"unknown instance policy {policy!r}; expected one of {', '.join(POLICIES)}",
                         key="policy")
    return policy
