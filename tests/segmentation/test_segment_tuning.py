"""Tuning segmentation: ``vitrine segment --json`` (boxes, phrases, scores, attempts, thresholds), the
whole-person box rejection for garment prompts, and the classic engine saying what it cannot isolate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.segmentation.test_grounded_sam import EXACT, IMG, BoxMasks, ForgedDetector

from pipelines.errors import InputError
from pipelines.segmentation.grounded_sam import GroundedSam
from pipelines.segmentation.grounded_sam.person_box import box_cover, is_garment_prompt
from pipelines.imageio import save_image

REPO = Path(__file__).resolve().parents[2]
VITRINE = str(Path(sys.executable).parent / "vitrine")

#: A person standing in the 100x80 test image, and a "shirt" box around the whole of them.
PERSON = (20, 2, 80, 78)
WHOLE = (19, 1, 81, 79)
SHIRT = (24, 18, 76, 45)



def _area(mask):
    return int((mask > 0).sum())


# -- whole-person box rejection -----------------------------------------------------------------------------
def test_garment_prompts_are_told_from_full_body_ones():
    for p in (["shirt", "t-shirt", "top"], ["upper garment"], ["jeans"], ["garment"], ["clothing"], ["bag"]):
        assert is_garment_prompt(p), p
    for p in (["person"], ["dress"], ["gown", "jumpsuit"], ["face"], ["hair"], ["car"]):
        assert not is_garment_prompt(p), p
    assert box_cover(WHOLE, PERSON) == 1.0 and 0.2 < box_cover(SHIRT, PERSON) < 0.4
    assert box_cover((0, 0, 1, 1), PERSON) == 0.0


def test_a_whole_person_box_is_rejected_when_a_garment_is_asked_for():
    pipe = GroundedSam(ForgedDetector({"shirt": [(0.9, WHOLE), (0.6, SHIRT)], "person": [(0.8, PERSON)]}), BoxMasks())
    out = pipe(IMG, "shirt", refine=EXACT)
    assert out.found and _area(out.mask) == 52 * 27, "only the shirt box is segmented"
    [rej] = out.rejected
    assert rej["box"] == list(map(float, WHOLE)) and rej["cover"] == 1.0 and rej["label"] == "shirt"
    assert "garment was asked for" in rej["reason"] and out.to_json()["rejected_boxes"] == [rej]
    # Configurable: off keeps the whole-person box (the merge is then the whole person).
    kept = pipe(IMG, "shirt", refine=EXACT, person_box_cover=None)
    assert kept.rejected == [] and _area(kept.mask) == 62 * 78
    # A lower cover rejects the shirt too: nothing is left, which is a clean "not found" with a reason.
    none = pipe(IMG, "shirt", refine=EXACT, person_box_cover=0.2)
    assert not none.found and len(none.rejected) == 2 and "covered the whole person" in none.reason


def test_whole_person_boxes_are_kept_for_full_body_prompts_and_without_a_person():
    boxes = {"dress": [(0.9, WHOLE)], "shirt": [(0.9, WHOLE)], "person": [(0.8, PERSON)]}
    pipe = GroundedSam(ForgedDetector(boxes), BoxMasks())
    assert pipe(IMG, "dress", refine=EXACT).rejected == []
    no_person = GroundedSam(ForgedDetector({"shirt": [(0.9, WHOLE)]}), BoxMasks())
    out = no_person(IMG, "shirt", refine=EXACT)
    assert out.found and out.rejected == [], "a flat-lay garment may fill the frame"


# -- segment_image_detailed / vitrine segment --json ------------------------------------------------------
def test_detailed_report_of_grounded_sam(tiny_root):
    from pipelines.segmentation.api import segment_image_detailed

    image = np.full((40, 50, 3), 90, np.uint8)
    mask, report = segment_image_detailed(image, "hands", engine="grounded-sam", model_root=tiny_root,
                                          box_threshold=0.0, text_threshold=0.0, policy="best")
    assert mask.shape == (40, 50)
    json.dumps(report)
    assert report["engine"] == "grounded-sam" and report["prompt"] == "hands"
    assert (report["box_threshold"], report["text_threshold"], report["mask_threshold"]) == (0.0, 0.0, 0.5)
    assert report["attempts"] and {"box_threshold", "text_threshold", "kept"} <= set(report["attempts"][0])
    assert report["boxes"], "thresholds of 0 keep the tiny model's boxes"
    for b in report["boxes"]:
        assert len(b["box"]) == 4 and 0.0 <= b["score"] <= 1.0 and isinstance(b["phrases"], list)
    assert sum(b["used"] for b in report["boxes"]) == 1, "policy best uses one box"


def test_cli_segment_json_lists_boxes_attempts_and_thresholds(tiny_root, drawn_products, tmp_path):
    photo, out = tmp_path / "tee.png", tmp_path / "mask.png"
    save_image(photo, drawn_products["tee"][0])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([VITRINE, "segment", str(photo), "--prompt", "upper garment", "--engine", "grounded-sam",
                        "--model-root", str(tiny_root), "--out", str(out), "--box-threshold", "0.05",
                        "--text-threshold", "0.05", "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert r.returncode == 0, r.stderr
    [line] = r.stdout.splitlines()
    data = json.loads(line)
    assert data["image"] == str(photo) and data["mask"] == str(out) and data["size"] == [512, 512]
    assert data["engine"] == "grounded-sam" and data["prompt"] == "upper garment"
    assert "shirt" in data["caption"], "the preset's phrases were sent"
    assert data["box_threshold"] == 0.05 and data["text_threshold"] == 0.05 and data["mask_threshold"] == 0.5
    assert isinstance(data["attempts"], list) and data["attempts"][0]["box_threshold"] == 0.05
    assert isinstance(data["rejected_boxes"], list) and isinstance(data["boxes"], list)
    for b in data["boxes"]:
        assert set(b) >= {"box", "score", "label", "phrases", "text_score", "used"}
    assert np.asarray(Image.open(out)).shape == (512, 512)


def test_cli_segment_json_on_classic(drawn_products, tmp_path):
    photo, out = tmp_path / "tee.png", tmp_path / "mask.png"
    save_image(photo, drawn_products["tee"][0])
    r = subprocess.run([VITRINE, "segment", str(photo), "--prompt", "product", "--out", str(out), "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    mask = np.asarray(Image.open(out)) > 0
    ys, xs = np.nonzero(mask)
    assert data["engine"] == "classic" and data["target"] == "product" and data["found"]
    assert data["boxes"][0]["box"] == [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    assert data["box_threshold"] is None and data["attempts"] == []


# -- the classic engine's honest limits -----------------------------------------------------------------------
def test_classic_refuses_a_garment_on_a_person_instead_of_the_whole_body(astronaut_rgb, drawn_products):
    from pipelines.segmentation.api import segment_image

    with pytest.raises(InputError, match="cannot isolate 'upper garment'") as info:
        segment_image(astronaut_rgb, "upper garment", engine="classic")
    assert "grounded-sam" in info.value.message and "person" in info.value.message
    with pytest.raises(InputError, match="cannot isolate"):
        segment_image(astronaut_rgb, "product", engine="classic")
    # The whole person is what classic can do on that photo, and a product on a plain background.
    assert (segment_image(astronaut_rgb, "person", engine="classic") > 0).mean() > 0.25
    assert (segment_image(drawn_products["tee"][0], "upper garment", engine="classic") > 0).mean() > 0.2


def test_cli_classic_garment_on_a_person_is_a_clear_error(astronaut_rgb, tmp_path):
    photo = tmp_path / "astronaut.jpg"
    save_image(photo, astronaut_rgb, quality=95)
    r = subprocess.run([VITRINE, "segment", str(photo), "--prompt", "upper garment", "--out",
                        str(tmp_path / "m.png")], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 2 and not (tmp_path / "m.png").exists()
    assert "cannot isolate 'upper garment'" in r.stderr and "--engine grounded-sam" in r.stderr


def test_detailed_segmentation_checks_its_inputs_as_the_plain_call_does():
    from pipelines.errors import InputError
    from pipelines.segmentation.api import segment_image, segment_image_detailed

    for call in (segment_image, segment_image_detailed):
        with pytest.raises(InputError, match="HxWx3 uint8"):
            call(np.zeros((8, 8), np.float32), "person")
        with pytest.raises(InputError, match="threshold"):
            call(np.zeros((8, 8, 3), np.uint8), "person", threshold=1.5)
