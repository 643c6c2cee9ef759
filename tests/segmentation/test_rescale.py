"""`pipelines.segmentation.rescale`: a mask and a report from a downscaled copy, back in the photo's pixels."""

from __future__ import annotations

import numpy as np

from pipelines.segmentation.rescale import mask_to_source_size, report_to_source_pixels


def test_a_mask_at_the_photo_size_is_returned_as_is():
    mask = np.zeros((30, 40), np.uint8)
    assert mask_to_source_size(mask, (40, 30)) is mask


def test_a_downscaled_mask_is_resized_nearest_neighbour_to_width_by_height():
    mask = np.zeros((50, 100), np.uint8)
    mask[10:40, 20:60] = 255
    mask[0, 0] = 128  # a soft value stays a value of the input: no interpolation
    big = mask_to_source_size(mask, (200, 100))
    assert big.shape == (100, 200) and big.dtype == np.uint8
    assert set(np.unique(big)) == {0, 128, 255}
    assert big[20:80, 40:120].min() == 255 and big[:20].max() <= 128 and big[80:].max() == 0
    assert (big[::2, ::2] == mask).all()


def test_report_boxes_are_divided_by_the_scale_and_the_report_is_not_changed():
    report = {"engine": "grounded-sam", "boxes": [{"box": [10, 20, 30, 40], "score": 0.5}],
              "rejected_boxes": [{"box": [1, 2, 3, 4], "person_box": [0, 0, 10, 10], "reason": "person"}],
              "attempts": []}
    out = report_to_source_pixels(report, 0.3)
    assert list(out) == ["engine", "boxes", "rejected_boxes", "attempts"]
    assert out["boxes"] == [{"box": [33.33, 66.67, 100.0, 133.33], "score": 0.5}]
    assert out["rejected_boxes"] == [{"box": [3.33, 6.67, 10.0, 13.33], "person_box": [0.0, 0.0, 33.33, 33.33],
                                      "reason": "person"}]
    assert report["boxes"][0]["box"] == [10, 20, 30, 40]  # a copy


def test_scale_one_or_zero_keeps_the_boxes_and_missing_lists_become_empty():
    report = {"found": True, "boxes": [{"box": [1.234, 2, 3, 4]}]}
    for scale in (1.0, 0.0):
        out = report_to_source_pixels(report, scale)
        assert out["boxes"] == [{"box": [1.23, 2.0, 3.0, 4.0]}] and out["rejected_boxes"] == []
    assert report_to_source_pixels({}, 0.5) == {"boxes": [], "rejected_boxes": []}
