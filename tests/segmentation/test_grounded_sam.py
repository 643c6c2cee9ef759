"""grounded-sam: threshold semantics, retries, policies, the tiny-model backends, the CLI and the batch engine.

Threshold and policy tests forge the detector's output (or the tiny model's logits), so each threshold is
shown to do what its name says. Everything else runs on tiny random models written once per session by
`pipelines.dev_models.tiny_segmentation` and loaded through Vitrine's own loader.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipelines.errors import InputError
from pipelines.segmentation.grounded_sam import GroundedSam, loading
from pipelines.segmentation.grounded_sam.detection import (
    DetectorOutput,
    cxcywh_to_xyxy_pixels,
    ground,
    phrase_spans,
    relaxed_thresholds,
    select_detections,
)
from pipelines.segmentation.phrases import split_phrases
from pipelines.imageio import load_image, save_image
from pipelines.masks import RefineOptions

REPO = Path(__file__).resolve().parents[2]
@pytest.fixture(scope="module")
def tee(drawn_products):
    """The drawn tee at 512 px and its exact mask."""
    return drawn_products["tee"]


# --------------------------------------------------------------------------------------------------
# Threshold semantics on forged detector outputs
# --------------------------------------------------------------------------------------------------

# A caption "shirt . jacket ." tokenised as [CLS] shirt . jacket . [SEP]: phrase tokens at positions 1 and 3.
IDS = [101, 2001, 1012, 2002, 1012, 102]
SPANS = phrase_spans(IDS)


#: The token probability of every position a forged row does not set.
FILLER = np.float32(0.01)


def forged(rows: list[dict[int, float]], boxes=None, size=(200, 100)) -> DetectorOutput:
    """One query per row: {token position: probability}; other positions `FILLER`."""
    probs = np.full((len(rows), 8), FILLER, np.float32)
    for q, row in enumerate(rows):
        for pos, p in row.items():
            probs[q, pos] = p
    if boxes is None:
        boxes = [(0.2 + 0.15 * q, 0.5, 0.2, 0.4) for q in range(len(rows))]
    return DetectorOutput(probs, np.array(boxes, np.float32), SPANS, ["shirt", "jacket"], size,
                          tokens=["[CLS]", "shirt", ".", "jacket", ".", "[SEP]", "[PAD]", "[PAD]"])


def test_phrase_spans_skip_special_tokens_and_split_at_dots():
    assert SPANS == [[1], [3]]
    assert phrase_spans([101, 5, 6, 1012, 7, 1012, 102, 0, 0]) == [[1, 2], [4]]


def test_box_threshold_keeps_boxes_whose_best_phrase_token_beats_it():
    raw = forged([{1: 0.50}, {1: 0.30}])
    kept = select_detections(raw, box_threshold=0.4, text_threshold=0.1)
    assert [d.query for d in kept.detections] == [0] and kept.below_box_threshold == 1
    both = select_detections(raw, box_threshold=0.2, text_threshold=0.1)
    assert [d.query for d in both.detections] == [0, 1]
    assert select_detections(raw, box_threshold=0.5, text_threshold=0.1).detections == []  # strictly greater


def test_a_box_above_text_threshold_but_below_box_threshold_is_dropped():
    sel = select_detections(forged([{1: 0.3}]), box_threshold=0.35, text_threshold=0.25)
    assert sel.detections == [] and sel.below_box_threshold == 1 and sel.below_text_threshold == 0


def test_a_box_above_box_threshold_but_below_text_threshold_is_dropped():
    sel = select_detections(forged([{1: 0.5}]), box_threshold=0.35, text_threshold=0.6)
    assert sel.detections == [] and sel.below_text_threshold == 1 and sel.below_box_threshold == 0
    assert len(select_detections(forged([{1: 0.5}]), box_threshold=0.35, text_threshold=0.45).detections) == 1


def test_text_threshold_decides_which_phrases_and_words_a_box_gets():
    raw = forged([{1: 0.6, 3: 0.3}])
    loose = select_detections(raw, box_threshold=0.35, text_threshold=0.25).detections[0]
    assert loose.label == "shirt" and loose.phrases == ("shirt", "jacket") and loose.words == "shirt jacket"
    strict = select_detections(raw, box_threshold=0.35, text_threshold=0.4).detections[0]
    assert strict.phrases == ("shirt",) and strict.words == "shirt"
    assert strict.score == pytest.approx(0.6) and strict.text_score == pytest.approx(0.6)


def test_the_label_is_the_attached_phrase_with_the_highest_token():
    det = select_detections(forged([{1: 0.4, 3: 0.7}]), 0.35, 0.25).detections[0]
    assert det.label == "jacket" and det.phrase_index == 1


def test_special_token_scores_do_not_make_a_box_without_a_phrase():
    raw = forged([{0: 0.99, 2: 0.99, 5: 0.99, 1: 0.1}])  # [CLS], ".", [SEP] high; the phrase low
    sel = select_detections(raw, 0.35, 0.25)
    assert sel.detections == [] and sel.below_text_threshold == 1  # passes box_threshold, has no phrase


def test_box_score_is_the_max_over_every_caption_position_as_upstream():
    """Upstream GroundingDINO and transformers score a box by its max over all caption positions."""
    raw = forged([{2: 0.6, 1: 0.3}])  # the "." after "shirt" is the box's best position
    det = select_detections(raw, 0.35, 0.25).detections[0]
    assert det.score == pytest.approx(0.6) and det.text_score == pytest.approx(0.3) and det.label == "shirt"


def test_box_scores_equal_transformers_post_processing(tiny_root):
    """On the tiny GroundingDINO: our box scores are transformers' post_process_grounded_object_detection's."""
    pipe = GroundedSam.from_models(tiny_root, device="cpu")
    det = pipe.detector
    image = np.random.default_rng(1).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    raw = det.detect(image, ["shirt", "person"])
    inputs = det.processor(images=Image.fromarray(image), text="shirt . person .", return_tensors="pt")
    with torch.inference_mode():
        out = det.model(**inputs)
    theirs = det.processor.post_process_grounded_object_detection(
        out, inputs["input_ids"], threshold=0.0, text_threshold=0.0, target_sizes=[(60, 90)])[0]["scores"]
    ours = select_detections(raw, 0.0, 0.0, nms_iou=None, max_boxes=10_000).detections
    assert len(ours) >= 5 and any(d.score > d.text_score + 0.1 for d in ours)  # a structural position wins
    for d in ours:
        assert d.score == pytest.approx(float(theirs[d.query]), abs=1e-6)


def test_structural_token_ids_come_from_the_tokenizer():
    """A BERT vocabulary that numbers [CLS]/[SEP]/"." unlike bert-base-uncased still splits right."""
    from transformers import BertTokenizer

    from pipelines.segmentation.grounded_sam.detection import BERT_STRUCTURAL_IDS, structural_ids

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", "shirt", "blue", "jeans"]
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    got = structural_ids(tok)
    assert got.separators == {5, 6} and got.boundaries == {0, 2, 3} and got != BERT_STRUCTURAL_IDS
    ids = tok("shirt . blue jeans .")["input_ids"]
    spans = phrase_spans(ids, got)
    assert [tok.decode([ids[p] for p in sp]) for sp in spans] == ["shirt", "blue jeans"]
    assert phrase_spans(ids) != spans  # bert-base-uncased's hard-coded ids would mis-split this caption


def test_merge_is_the_union_of_the_upscaled_masks(tiny_root):
    """Upscale each box's mask, then unite: not the max of the low-resolution logits, upscaled."""
    from pipelines.segmentation.grounded_sam.detection import Detection

    pipe = GroundedSam.from_models(tiny_root, sam="facebook/sam-vit-huge", device="cpu")
    image = np.random.default_rng(2).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    pipe.mask_predictor.set_image(image)
    boxes = [(10.0, 10.0, 120.0, 100.0), (60.0, 40.0, 190.0, 140.0), (5.0, 80.0, 70.0, 148.0)]
    dets = [Detection(b, 0.9 - 0.1 * i, "shirt", 0, 0.5, i) for i, b in enumerate(boxes)]
    merged, used, _ = pipe.masks_for(dets, "merge", 0.5)
    low, _ = pipe.mask_predictor.predict_low_res(np.array(boxes, np.float32))
    each = pipe.mask_predictor.upscale(low)
    assert used == [0, 1, 2]
    np.testing.assert_array_equal(merged >= 0.5, (each >= 0.5).any(axis=0))
    np.testing.assert_allclose(merged, each.max(axis=0), rtol=0, atol=1e-6)


@pytest.mark.parametrize("sam", ["facebook/sam-vit-huge", "syscv-community/sam-hq-vit-base",
                                 "facebook/sam2.1-hiera-tiny"])
def test_box_prompt_equals_the_processors_without_reprocessing_the_image(tiny_root, sam):
    pipe = GroundedSam.from_models(tiny_root, sam=sam, device="cpu")
    pred = pipe.mask_predictor
    image = np.random.default_rng(3).integers(0, 255, (130, 210, 3), dtype=np.uint8)
    pred.set_image(image)
    boxes = [[3.5, 7.0, 100.25, 120.0], [50.0, 10.0, 209.0, 129.0]]
    want = pred.processor(images=Image.fromarray(image), input_boxes=[boxes], return_tensors="pt")["input_boxes"]
    got = pred.box_prompt(np.array(boxes))
    assert tuple(got.shape) == tuple(want.shape)
    torch.testing.assert_close(got.double(), want.double(), rtol=0, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1, width=32), st.floats(0, 1, width=32)), min_size=1, max_size=6),
       st.floats(0, 1, width=32), st.floats(0, 1, width=32))
@example(rows=[(0.0, 0.0078125)], box_threshold=0.0078125, text_threshold=0.0)  # the filler beats the box threshold
def test_kept_boxes_pass_both_thresholds_and_dropped_ones_fail_one(rows, box_threshold, text_threshold):
    raw = forged([{1: a, 3: b} for a, b in rows], boxes=[(0.1 + 0.15 * q, 0.5, 0.1, 0.4) for q in range(len(rows))])
    sel = select_detections(raw, box_threshold, text_threshold, nms_iou=None)
    kept = {d.query for d in sel.detections}
    for q, (a, b) in enumerate(rows):
        # The box score is the max over every position, the forged filler (0.01) included; the text score over
        # the phrases' tokens only.
        passes = max(a, b, FILLER) > box_threshold and max(a, b) > text_threshold
        assert (q in kept) == passes
    for d in sel.detections:
        assert d.score > box_threshold and d.text_score > text_threshold and d.label in d.phrases


def test_boxes_are_xyxy_pixels_clipped_to_the_image():
    xyxy = cxcywh_to_xyxy_pixels(np.array([[0.5, 0.5, 0.5, 0.25], [0.0, 0.0, 0.5, 0.5]]), (200, 100))
    np.testing.assert_allclose(xyxy, [[50, 37.5, 150, 62.5], [0, 0, 50, 25]])
    det = select_detections(forged([{1: 0.9}], boxes=[(0.5, 0.5, 0.5, 0.25)]), 0.35, 0.25).detections[0]
    assert det.box == pytest.approx((50, 37.5, 150, 62.5))


def test_degenerate_and_duplicate_boxes_are_dropped():
    boxes = [(0.5, 0.5, 0.4, 0.4), (0.501, 0.5, 0.4, 0.4), (0.5, 0.5, 0.001, 0.4)]
    sel = select_detections(forged([{1: 0.9}, {1: 0.8}, {1: 0.95}], boxes=boxes), 0.35, 0.25)
    assert [d.query for d in sel.detections] == [0] and sel.duplicates == 1 and sel.degenerate == 1
    assert len(select_detections(forged([{1: 0.9}, {1: 0.8}], boxes=boxes[:2]), 0.35, 0.25, nms_iou=None)
               .detections) == 2


def test_relaxed_thresholds_shrink_both_and_respect_the_floor():
    assert relaxed_thresholds(0.35, 0.25) == [(0.35, 0.25), pytest.approx((0.2625, 0.1875)),
                                              pytest.approx((0.175, 0.125))]
    assert relaxed_thresholds(0.06, 0.04) == [(0.06, 0.04), (0.05, 0.04)]
    assert relaxed_thresholds(0.35, 0.25, retry=False) == [(0.35, 0.25)]


def test_retry_relaxes_until_a_box_survives_and_records_every_attempt():
    g = ground(forged([{1: 0.2}]), 0.35, 0.25)
    assert g.found and g.relaxed and len(g.attempts) == 3
    assert [a.box_threshold for a in g.attempts] == pytest.approx([0.35, 0.2625, 0.175])
    assert not ground(forged([{1: 0.2}]), 0.35, 0.25, retry=False).found
    nothing = ground(forged([{1: 0.02}]), 0.35, 0.25)
    assert not nothing.found and len(nothing.attempts) == 3 and nothing.detections == []


def test_split_phrases_and_threshold_validation():
    assert split_phrases("Shirt. T-shirt .. shirt") == ["shirt", "t-shirt"]
    with pytest.raises(InputError, match="names nothing"):
        split_phrases(" . ")
    with pytest.raises(InputError, match="box_threshold"):
        GroundedSam(None, None)(np.zeros((8, 8, 3), np.uint8), "shirt", box_threshold=1.5)


# --------------------------------------------------------------------------------------------------
# The pipeline with forged components: policies, nothing found, occluders
# --------------------------------------------------------------------------------------------------


class ForgedDetector:
    """Returns fixed boxes per phrase: {phrase: [(score, (x0, y0, x1, y1) pixels)]}."""

    def __init__(self, boxes: dict[str, list[tuple[float, tuple[int, int, int, int]]]]):
        self.boxes = boxes

    def detect(self, image, phrases):
        h, w = image.shape[:2]
        rows, cxcywh = [], []
        for phrase in phrases:
            for score, (x0, y0, x1, y1) in self.boxes.get(phrase, []):
                rows.append({1 + 2 * phrases.index(phrase): score})
                cxcywh.append(((x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h))
        probs = np.full((max(1, len(rows)), 2 * len(phrases) + 2), 0.01, np.float32)
        for q, row in enumerate(rows):
            for pos, p in row.items():
                probs[q, pos] = p
        spans = [[1 + 2 * i] for i in range(len(phrases))]
        return DetectorOutput(probs, np.array(cxcywh or [(0.5, 0.5, 0.1, 0.1)], np.float32), spans, list(phrases),
                              (w, h))


class BoxMasks:
    """A mask model whose mask of a box is the box itself (full resolution stands in for low resolution)."""

    def set_image(self, image):
        self.shape = image.shape[:2]

    def predict_low_res(self, boxes):
        logits = torch.full((len(boxes), *self.shape), -10.0)
        for i, (x0, y0, x1, y1) in enumerate(np.round(boxes).astype(int)):
            logits[i, y0:y1, x0:x1] = 10.0
        return logits, np.linspace(0.9, 0.5, len(boxes))

    def upscale(self, low):
        return torch.sigmoid(low).numpy()


@pytest.fixture
def forged_pipe():
    boxes = {"shirt": [(0.9, (10, 10, 30, 30)), (0.6, (40, 10, 90, 60))], "hand": [(0.8, (15, 15, 25, 25))]}
    return GroundedSam(ForgedDetector(boxes), BoxMasks())


IMG = np.full((80, 100, 3), 200, np.uint8)
#: No outline smoothing, so that areas are exact.
EXACT = RefineOptions(smooth_px=0)


def _area(mask):
    return int((mask > 0).sum())


def test_policy_merge_unites_every_instance(forged_pipe):
    out = forged_pipe(IMG, "shirt", policy="merge", refine=EXACT)
    assert out.found and out.used == [0, 1] and _area(out.mask) == 20 * 20 + 50 * 50


def test_policy_best_keeps_the_highest_box_score(forged_pipe):
    out = forged_pipe(IMG, "shirt", policy="best", refine=EXACT)
    assert out.used == [0] and _area(out.mask) == 20 * 20 and out.mask[20, 20] == 255


def test_policy_largest_keeps_the_largest_mask(forged_pipe):
    out = forged_pipe(IMG, "shirt", policy="largest", refine=EXACT)
    assert out.used == [1] and _area(out.mask) == 50 * 50 and out.mask[20, 20] == 0


def test_unknown_policy_is_an_input_error(forged_pipe):
    with pytest.raises(InputError, match="policy"):
        forged_pipe(IMG, "shirt", policy="biggest")


def test_nothing_found_is_an_empty_mask_and_a_flag_never_an_error(forged_pipe):
    out = forged_pipe(IMG, "dress")
    assert not out.found and out.mask.shape == (80, 100) and out.mask.dtype == np.uint8 and not out.mask.any()
    assert len(out.attempts) == 3 and "no box" in out.reason
    filtered = forged_pipe(IMG, "shirt", box_threshold=0.95, text_threshold=0.95, retry=False)
    assert not filtered.found and filtered.attempts[0]["below_box_threshold"] == 2
    json.dumps(filtered.to_json())


def test_occluders_are_subtracted(forged_pipe):
    whole = forged_pipe(IMG, "shirt", policy="best", refine=EXACT)
    minus = forged_pipe(IMG, "shirt", policy="best", exclude=["hand"], refine=EXACT)
    assert _area(whole.mask) - _area(minus.mask) == 10 * 10 and minus.mask[20, 20] == 0
    assert minus.excluded == {"hand .": 1}


def test_output_summary_is_json_ready(forged_pipe):
    s = forged_pipe(IMG, "shirt").to_json()
    assert json.loads(json.dumps(s))["detections"][0]["box"] == [10.0, 10.0, 30.0, 30.0]
    assert s["found"] and s["policy"] == "merge" and s["relaxed"] is False


# --------------------------------------------------------------------------------------------------
# Tiny models through Vitrine's own loader
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sam", ["facebook/sam-vit-huge", "syscv-community/sam-hq-vit-base",
                                 "facebook/sam2.1-hiera-tiny", "ybelkada/segment-anything"])
def test_every_mask_backend_gives_a_binary_mask_of_the_image_size(tiny_root, sam):
    image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    pipe = GroundedSam.from_models(tiny_root, sam=sam, device="cpu")
    out = pipe(image, "shirt. person", box_threshold=0.0, text_threshold=0.0)
    assert out.mask.shape == (90, 120) and out.mask.dtype == np.uint8
    assert set(np.unique(out.mask)) <= {0, 255}
    assert out.detections and all(0 <= d.box[0] < d.box[2] <= 120 and 0 <= d.box[1] < d.box[3] <= 90
                                  for d in out.detections)
    assert [m["id"] for m in out.models] == ["IDEA-Research/grounding-dino-base", sam]


def test_models_load_once_per_process(tiny_root):
    a = GroundedSam.from_models(tiny_root, device="cpu")
    b = GroundedSam.from_models(tiny_root, device="cpu")
    assert a.detector is b.detector and a.mask_predictor is b.mask_predictor
    key = loading.cache_key(a.models[0], "cpu", None) + (None,)
    assert loading.LOAD_COUNTS[key] == 1


def test_threads_sharing_the_models_get_their_own_image(tiny_root):
    """The batch renders SKUs in threads that share the models; SAM keeps the current image's embedding."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (64 + 16 * i, 80, 3), dtype=np.uint8) for i in range(4)]
    pipe = GroundedSam.from_models(tiny_root, device="cpu")
    expected = [pipe(im, "shirt", box_threshold=0.0, text_threshold=0.0).mask for im in images]
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda im: pipe(im, "shirt", box_threshold=0.0, text_threshold=0.0).mask, images * 2))
    for i, mask in enumerate(got):
        np.testing.assert_array_equal(mask, expected[i % 4])


def test_auto_model_choice_prefers_base_and_huge(tiny_root):
    det, mask = loading.resolve_models(tiny_root)
    assert (det.id, mask.id) == ("IDEA-Research/grounding-dino-base", "facebook/sam-vit-huge")
    assert det.licence == mask.licence == "Apache-2.0" and det.source == "model-root"
    ok, why = loading.probe(tiny_root)
    assert ok and "grounding-dino-base" in why


def test_on_a_cpu_the_same_sam_comes_from_its_segment_anything_checkpoint(tiny_root, tmp_path):
    """sam-vit-base and the original sam_vit_b .pth both found: segment_anything on a CPU, transformers else."""
    for rid in ("IDEA-Research/grounding-dino-base", "facebook/sam-vit-base", "ybelkada/segment-anything"):
        (tmp_path / rid).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rid).symlink_to(tiny_root / rid, target_is_directory=True)
    _, on_cpu = loading.resolve_models(tmp_path, device="cpu")
    assert on_cpu.backend == "segment_anything" and on_cpu.file == "checkpoints/sam_vit_b_01ec64.pth"
    _, on_gpu = loading.resolve_models(tmp_path, device="cuda")
    assert on_gpu.id == "facebook/sam-vit-base" and on_gpu.backend == "transformers"
    assert loading.resolve_models(tmp_path)[1].id == "facebook/sam-vit-base"  # file checks only: unchanged
    _, huge = loading.resolve_models(tiny_root, device="cpu")  # ViT-H has no original checkpoint there
    assert huge.id == "facebook/sam-vit-huge"
    pipe = GroundedSam.from_models(tmp_path, device="cpu")
    assert type(pipe.mask_predictor).__name__ == "OriginalSamPredictor"


def test_missing_models_are_a_clear_error(tmp_path, tiny_root):
    ok, why = loading.probe(tmp_path)
    assert not ok and "IDEA-Research/grounding-dino-base" in why and "hf download" in why
    with pytest.raises(InputError, match="not a known Segment Anything"):
        loading.resolve_models(tiny_root, sam="facebook/sam-vit-gigantic")
    with pytest.raises(InputError, match="facebook/sam-vit-large not found"):
        loading.resolve_models(tiny_root, sam="facebook/sam-vit-large")


def test_a_sam_pth_file_can_be_named_directly(tiny_root):
    pth = tiny_root / "ybelkada/segment-anything/checkpoints/sam_vit_b_01ec64.pth"
    _, mask = loading.resolve_models(tiny_root, sam=str(pth))
    assert mask.source == "file" and mask.backend == "segment_anything" and mask.file == pth.name


def test_thresholds_act_as_named_on_the_tiny_transformers_detector(tiny_root, monkeypatch):
    """Forge the tiny GroundingDINO's logits: one box passes box_threshold only, the other text_threshold only."""
    pipe = GroundedSam.from_models(tiny_root, device="cpu")
    model = pipe.detector.model
    real_forward = model.forward

    def forward(**inputs):
        out = real_forward(**inputs)
        ids = inputs["input_ids"][0].tolist()
        shirt = phrase_spans(ids)[0][0]
        logits = torch.full_like(out.logits, -20.0)
        logits[0, 0, shirt] = torch.logit(torch.tensor(0.50))  # box A: 0.50 > box 0.4, < text 0.6
        logits[0, 1, shirt] = torch.logit(torch.tensor(0.30))  # box B: 0.30 < box 0.4, > text 0.2
        boxes = out.pred_boxes.clone()
        boxes[0, :2] = torch.tensor([[0.3, 0.5, 0.4, 0.6], [0.7, 0.5, 0.4, 0.6]])
        return SimpleNamespace(logits=logits, pred_boxes=boxes)

    monkeypatch.setattr(model, "forward", forward)
    image = np.full((60, 100, 3), 128, np.uint8)
    # The forged logits answer "person ." with the same boxes: keep whole-person boxes (tested elsewhere).
    pipe = functools.partial(pipe, person_box_cover=None)
    a_only = pipe(image, "shirt", box_threshold=0.4, text_threshold=0.2, retry=False)
    assert [d.query for d in a_only.detections] == [0]
    assert a_only.detections[0].box == pytest.approx((10, 12, 50, 48), abs=1e-3)
    none = pipe(image, "shirt", box_threshold=0.4, text_threshold=0.6, retry=False)
    assert not none.found and none.attempts[0]["below_text_threshold"] == 1
    assert none.attempts[0]["below_box_threshold"] == model.config.num_queries - 1
    both = pipe(image, "shirt", box_threshold=0.25, text_threshold=0.2, retry=False)
    assert [d.query for d in both.detections] == [0, 1]


# --------------------------------------------------------------------------------------------------
# `vitrine segment`
# --------------------------------------------------------------------------------------------------


def test_cli_segment_writes_a_binary_mask_of_the_image_size(tiny_root, tee, tmp_path):
    photo, out = tmp_path / "tee.png", tmp_path / "mask.png"
    save_image(photo, tee[0][:, :400])  # not square
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    vitrine = str(Path(sys.executable).parent / "vitrine")
    r = subprocess.run([vitrine, "segment", str(photo), "--prompt", "shirt", "--engine", "grounded-sam",
                        "--model-root", str(tiny_root), "--out", str(out), "--box-threshold", "0.1",
                        "--policy", "largest"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
                       check=False)
    assert r.returncode == 0, r.stderr
    mask = np.asarray(Image.open(out))
    assert mask.shape == (512, 400) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert r.stdout.startswith(str(out))


def test_segment_image_routes_options_to_grounded_sam(tiny_root):
    from pipelines.segmentation.api import segment_image, segmenter_names

    assert "grounded-sam" in segmenter_names()
    image = np.full((40, 50, 3), 90, np.uint8)
    mask = segment_image(image, "hands", engine="grounded-sam", model_root=tiny_root, box_threshold=0.0,
                         text_threshold=0.0, policy="best")
    assert mask.shape == (40, 50) and set(np.unique(mask)) <= {0, 255}
    with pytest.raises(InputError, match="no option 'colour'"):
        segment_image(image, "shirt", engine="grounded-sam", model_root=tiny_root, colour="red")


# --------------------------------------------------------------------------------------------------
# The batch engine
# --------------------------------------------------------------------------------------------------


def _product(root: Path, rgb: np.ndarray, spec: str, sku: str = "tee", masks: dict | None = None):
    from pipelines.product import load_product

    d = root / "products" / sku
    d.mkdir(parents=True, exist_ok=True)
    save_image(d / "front.png", rgb)
    (d / "product.yaml").write_text(spec)
    for name, arr in (masks or {}).items():
        (d / "masks").mkdir(exist_ok=True)
        Image.fromarray(arr).save(d / "masks" / name)
    return load_product(d, root=root / "products")


def test_auto_picks_grounded_sam_when_its_models_are_found(tiny_root, tmp_path):
    from pipelines.engines.registry import get_engine

    engine = get_engine("auto", model_root=tiny_root)
    assert engine.name == "grounded-sam" and "grounding-dino-base" in engine.describe()["reason"]
    assert get_engine("auto", model_root=tmp_path).name != "grounded-sam"
    with pytest.raises(InputError, match="not available"):
        get_engine("grounded-sam", model_root=tmp_path)


def test_find_subject_records_model_prompt_and_threshold_origins(tiny_root, tmp_path, tee):
    from pipelines.engines.registry import get_engine

    product = _product(tmp_path, tee[0], "garment_type: upper\nthresholds: {box_threshold: 0.05}\n")
    subject = get_engine("grounded-sam", model_root=tiny_root).find_subject(load_image(product.images[0]), product)
    assert subject.kind == "product" and subject.source == "grounded-sam"
    assert "IDEA-Research/grounding-dino-base + facebook/sam-vit-huge" in subject.reason
    gs = subject.metrics["grounded_sam"]
    assert gs["resolved"]["preset"] == "upper" and gs["box_threshold"] == 0.05 and gs["text_threshold"] == 0.25
    assert gs["resolved"]["sources"]["box_threshold"] == "product.yaml thresholds.box_threshold"
    assert gs["resolved"]["sources"]["text_threshold"].startswith("preset upper")
    assert subject.alpha.shape == tee[0].shape[:2] and subject.alpha.dtype == np.uint8


def test_an_on_model_photo_on_white_is_segmented_as_the_person_not_a_garment(tiny_root, tmp_path, tee):
    """Routing by evidence of a person, as the classic segmenter does: an on-model shot on a white sweep is as
    plain as a flat lay, and used to be segmented with the garment prompt (a shirt cut off its wearer)."""
    from pipelines.engines.registry import get_engine
    from pipelines.samples import grace_hopper

    engine = get_engine("grounded-sam", model_root=tiny_root)
    portrait = grace_hopper()
    h, w = portrait.shape[:2]
    on_white = np.full((h + h // 2, w + w // 2, 3), 252, np.uint8)
    on_white[h // 4:h // 4 + h, w // 4:w // 4 + w] = portrait
    person = _product(tmp_path, on_white, "garment_type: upper\n", sku="on-model")
    subject = engine.find_subject(load_image(person.images[0]), person)
    assert subject.metrics["background_uniformity"] >= 0.85  # plain: the old rule took the garment path
    assert subject.metrics["grounded_sam"]["resolved"]["target"] == "person"
    assert subject.metrics["route"]["person"] is True or subject.metrics.get("fallback") == "classic"
    assert subject.kind == "person" and "person in frame" in subject.reason
    # a flat lay on the same backdrop stays a garment
    flat = _product(tmp_path, tee[0], "garment_type: upper\n", sku="flat")
    garment = engine.find_subject(load_image(flat.images[0]), flat)
    assert garment.metrics["grounded_sam"]["resolved"]["target"] == "garment"
    assert garment.metrics["route"]["person"] is False and "product on a plain background" in garment.reason


def test_analyst_override_wins_white_include_black_exclude_grey_model(tiny_root, tmp_path, tee):
    from pipelines.engines.registry import get_engine

    engine = get_engine("grounded-sam", model_root=tiny_root)
    plain = _product(tmp_path / "a", tee[0], "garment_type: upper\n")
    model_alpha = engine.find_subject(load_image(plain.images[0]), plain).alpha
    override = np.full(tee[0].shape[:2], 128, np.uint8)
    override[:100, :100] = 255
    override[-100:, -100:] = 0
    painted = _product(tmp_path / "b", tee[0], "garment_type: upper\n", masks={"garment.png": override})
    subject = engine.find_subject(load_image(painted.images[0]), painted)
    assert subject.source == "grounded-sam+override" and subject.metrics["override"] == "masks/garment.png"
    assert (subject.alpha[:100, :100] == 255).all() and (subject.alpha[-100:, -100:] == 0).all()
    grey = override == 128
    np.testing.assert_array_equal(subject.alpha[grey], model_alpha[grey])


def test_nothing_found_falls_back_to_classic_and_says_why(tiny_root, tmp_path, tee, monkeypatch):
    from pipelines.engines.registry import get_engine

    engine = get_engine("grounded-sam", model_root=tiny_root)
    monkeypatch.setattr(engine.segmenter.pipeline(), "detector", ForgedDetector({}))
    product = _product(tmp_path, tee[0], "garment_type: upper\n")
    subject = engine.find_subject(load_image(product.images[0]), product)
    assert subject.source == "classic-cutout" and subject.metrics["fallback"] == "classic"
    assert subject.reason.startswith("grounded-sam found nothing") and "classic fallback" in subject.reason
    # ... unless the analyst painted the garment: then the override alone makes the mask.
    override = np.full(tee[0].shape[:2], 128, np.uint8)
    override[50:150, 60:200] = 255
    painted = _product(tmp_path / "b", tee[0], "garment_type: upper\n", masks={"garment.png": override})
    subject = engine.find_subject(load_image(painted.images[0]), painted)
    assert subject.source == "grounded-sam+override" and subject.bbox == (60, 50, 200, 150)


def test_batch_sku_through_process_sku_writes_a_valid_manifest(tiny_root, tmp_path, tee):
    from pipelines.catalog.options import RenderOptions
    from pipelines.catalog.render import process_sku
    from pipelines.engines.registry import get_engine
    from pipelines.catalog.manifest import read_manifest, validate_manifest

    product = _product(tmp_path, tee[0], "garment_type: upper\nbackgrounds: [white]\n"
                                         "thresholds: {box_threshold: 0.05, text_threshold: 0.05}\n")
    engine = get_engine("grounded-sam", model_root=tiny_root)
    result = process_sku(product, tmp_path / "catalog", engine, RenderOptions(canvas=256))
    assert result.status == "ok", result.error
    m = read_manifest(tmp_path / "catalog" / "tee" / "manifest.json")
    validate_manifest(m)
    assert m["engine"]["name"] == "grounded-sam" and "grounded-sam" in m["engine"]["backends"]["product_segmentation"]
    ids = {x["id"]: x for x in m["models"]}
    for mid in ("IDEA-Research/grounding-dino-base", "facebook/sam-vit-huge"):
        assert ids[mid]["licence"] == "Apache-2.0" and "revision" in ids[mid] and ids[mid]["commercial"]
    subj = m["subjects"][0]
    assert subj["source"].startswith(("grounded-sam", "classic"))
    assert subj["metrics"]["grounded_sam"]["models"] == ["IDEA-Research/grounding-dino-base", "facebook/sam-vit-huge"]


# --------------------------------------------------------------------------------------------------
# Documented defaults are the real ones
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [GroundedSam.__call__, RefineOptions])
def test_documented_defaults_match_the_signature(fn):
    import inspect
    import re

    doc = inspect.getdoc(fn)
    documented = {m[1]: m[2].strip('`"') for m in
                  re.finditer(r"^\s*(\w+) \(`[^`]*`, \*optional\*, defaults to ([^)]+?)\):", doc, re.MULTILINE)}
    params = inspect.signature(fn).parameters
    assert documented
    for name, text in documented.items():
        default = params[name].default
        if isinstance(default, float):
            assert default == float(text), name
        else:
            assert str(default) == text, name
