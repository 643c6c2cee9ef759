"""Per-category prompt presets and how product.yaml overrides them."""

import pytest

from pipelines.product import ProductSpec
from pipelines.segmentation.prompts import GARMENT_TYPE_PRESETS, PRESETS, find_preset, get_preset, resolve_prompt

REQUIRED = ("upper", "lower", "dress", "outerwear", "shoes", "bag", "person", "face", "hair", "hands")


def test_every_required_category_has_a_preset():
    for name in REQUIRED:
        preset = PRESETS[name]
        assert preset.phrases and 0 < preset.box_threshold < 1 and 0 < preset.text_threshold < 1
        assert preset.policy in ("merge", "best", "largest") and preset.edges in ("hard", "feather", "matte")
        assert all(o in PRESETS for o in preset.occluders)
    assert PRESETS["hair"].edges == "matte"  # soft edges where they matter


def test_garment_types_map_to_presets():
    for garment_type, name in GARMENT_TYPE_PRESETS.items():
        r = resolve_prompt(ProductSpec(garment_type=garment_type))
        assert r.preset == name and r.phrases == PRESETS[name].phrases
        assert r.sources["phrases"] == f"preset {name} (garment_type {garment_type})"
    for garment_type in ("accessory", "other", None):
        assert resolve_prompt(ProductSpec(garment_type=garment_type)).preset == "product"


def test_category_words_help_when_garment_type_is_unset():
    r = resolve_prompt(ProductSpec(category="Women's Jeans & Trousers"))
    assert r.preset == "lower" and "category" in r.sources["phrases"]


def test_product_yaml_prompt_and_thresholds_override_the_preset_key_by_key():
    spec = ProductSpec.model_validate({"garment_type": "shoes", "prompts": {"garment": "red suede loafer. shoe"},
                                       "thresholds": {"text_threshold": 0.4}})
    r = resolve_prompt(spec)
    assert r.phrases == ("red suede loafer", "shoe") and r.sources["phrases"] == "product.yaml prompts.garment"
    assert r.text_threshold == 0.4 and r.sources["text_threshold"] == "product.yaml thresholds.text_threshold"
    assert r.box_threshold == PRESETS["shoes"].box_threshold  # not written in product.yaml: the preset's
    assert r.sources["box_threshold"].startswith("preset shoes")


def test_explicit_arguments_win_over_everything():
    spec = ProductSpec.model_validate({"garment_type": "upper", "thresholds": {"box_threshold": 0.2}})
    r = resolve_prompt(spec, box_threshold=0.5, policy="best", prompt="hands")
    assert r.box_threshold == 0.5 and r.policy == "best" and r.phrases == ("hand",)
    assert r.sources["box_threshold"] == r.sources["policy"] == r.sources["phrases"] == "argument"
    with pytest.raises(TypeError):
        resolve_prompt(spec, colour="red")


def test_other_targets_and_preset_names():
    assert resolve_prompt(None, "person").phrases == ("person",)
    assert get_preset("Upper Garment").name == "upper" and find_preset("hands.").name == "hands"
    assert find_preset("red shirt") is None
    with pytest.raises(KeyError, match="known"):
        get_preset("socks")
    assert resolve_prompt(None, "hair").to_json()["prompt"] == "hair."
