"""Segmentation prompt presets per category, and how a product's ``product.yaml`` overrides them.

A preset names what to look for (GroundingDINO phrases), the thresholds that suit it, which instance to
keep when several are found, and how its edges are made. A product's ``garment_type`` picks the preset of
its garment; ``prompts.garment`` and ``thresholds`` in ``product.yaml`` override it, key by key.

=============  ==================  =============================================================
preset         ``garment_type``     phrases
=============  ==================  =============================================================
upper          upper               shirt, t-shirt, top, blouse, sweater, hoodie
lower          lower               trousers, pants, jeans, shorts, skirt, leggings
dress          dress               dress, gown, jumpsuit
outerwear      outerwear           jacket, coat, blazer, parka
shoes          shoes               shoe, sneaker, boot, sandal
bag            bag                 bag, handbag, tote, backpack
person         --                  person
face           --                  face
hair           --                  hair
hands          --                  hand
product        accessory, other,   clothing, garment, product (the fallback)
               unset
=============  ==================  =============================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.segmentation.phrases import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, split_phrases

if TYPE_CHECKING:
    from pipelines.product import ProductSpec

DEFAULT_MASK_THRESHOLD = 0.5


@dataclass(frozen=True)
class PromptPreset:
    """What to segment for one category.

    Attributes:
        name (`str`): the preset's key, e.g. ``upper``.
        title (`str`): a readable name, e.g. ``upper garment``; also accepted as a prompt.
        phrases (`tuple[str, ...]`): GroundingDINO phrases, any of which marks the target.
        box_threshold (`float`): see `pipelines.segmentation.grounded_sam.detection`.
        text_threshold (`float`): see `pipelines.segmentation.grounded_sam.detection`.
        policy (`str`): ``merge`` (every instance), ``best`` (highest box score) or ``largest`` (largest mask).
        edges (`str`): ``hard``, ``feather`` or ``matte`` (see `pipelines.masks.RefineOptions`).
        occluders (`tuple[str, ...]`): presets that can cover it, subtracted when asked (``exclude``).
    """

    name: str
    title: str
    phrases: tuple[str, ...]
    box_threshold: float = DEFAULT_BOX_THRESHOLD
    text_threshold: float = DEFAULT_TEXT_THRESHOLD
    policy: str = "merge"
    edges: str = "hard"
    occluders: tuple[str, ...] = field(default_factory=tuple)

    @property
    def prompt(self) -> str:
        """The phrases as one GroundingDINO prompt: ``"shirt. t-shirt. top."``."""
        return " ".join(f"{p}." for p in self.phrases)


_ON_BODY = ("hair", "hands", "bag")
PRESETS: dict[str, PromptPreset] = {p.name: p for p in (
    PromptPreset("upper", "upper garment", ("shirt", "t-shirt", "top", "blouse", "sweater", "hoodie"),
                 occluders=_ON_BODY),
    PromptPreset("lower", "lower garment", ("trousers", "pants", "jeans", "shorts", "skirt", "leggings"),
                 occluders=("hands", "bag")),
    PromptPreset("dress", "dress", ("dress", "gown", "jumpsuit"), occluders=_ON_BODY),
    PromptPreset("outerwear", "outerwear", ("jacket", "coat", "blazer", "parka"), occluders=_ON_BODY),
    PromptPreset("shoes", "shoes", ("shoe", "sneaker", "boot", "sandal"), box_threshold=0.3),
    PromptPreset("bag", "bag", ("bag", "handbag", "tote", "backpack"), policy="largest", occluders=("hands",)),
    PromptPreset("person", "person", ("person",), policy="largest", edges="feather"),
    PromptPreset("face", "face", ("face",), policy="largest", occluders=("hair", "hands")),
    PromptPreset("hair", "hair", ("hair",), box_threshold=0.3, policy="merge", edges="matte"),
    PromptPreset("hands", "hands", ("hand",), box_threshold=0.3, policy="merge"),
    PromptPreset("product", "product", ("clothing", "garment", "product"), box_threshold=0.3, policy="largest"),
)}
#: ``product.yaml`` ``garment_type`` -> preset. ``accessory``, ``other`` and unset use ``product``.
GARMENT_TYPE_PRESETS: dict[str, str] = {
    "upper": "upper", "lower": "lower", "dress": "dress", "outerwear": "outerwear", "shoes": "shoes", "bag": "bag",
}
#: Words of a free-text ``category`` that point to a preset when ``garment_type`` is unset.
CATEGORY_WORDS: dict[str, str] = {
    **{w: "upper" for w in ("top", "tops", "shirt", "shirts", "t-shirt", "t-shirts", "tee", "tees", "blouse",
                            "blouses", "sweater", "sweaters", "hoodie", "hoodies", "knitwear")},
    **{w: "lower" for w in ("bottom", "bottoms", "trousers", "pants", "jeans", "shorts", "skirt", "skirts",
                            "leggings")},
    **{w: "dress" for w in ("dress", "dresses", "gown", "gowns", "jumpsuit", "jumpsuits")},
    **{w: "outerwear" for w in ("outerwear", "jacket", "jackets", "coat", "coats", "blazer", "blazers")},
    **{w: "shoes" for w in ("shoe", "shoes", "footwear", "sneaker", "sneakers", "boots", "sandals")},
    **{w: "bag" for w in ("bag", "bags", "handbag", "handbags", "tote", "totes", "backpack", "backpacks")},
}


def get_preset(name: str) -> PromptPreset:
    """The preset named ``name`` (its key or its title, any case).

    Raises:
        `KeyError`: naming the known presets.
    """
    key = " ".join(name.lower().split())
    for p in PRESETS.values():
        if key in (p.name, p.title):
            return p
    raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")


def find_preset(prompt: str) -> PromptPreset | None:
    """The preset a prompt names exactly (``"upper garment"``, ``"hands"``, ``"shoes."``), else ``None``."""
    try:
        return get_preset(prompt.strip().rstrip("."))
    except KeyError:
        return None


def preset_for_garment_type(garment_type: str | None, category: str | None = None) -> tuple[PromptPreset, str]:
    """The preset for a product's ``garment_type`` (else a word of its ``category``, else ``product``), and why."""
    if garment_type in GARMENT_TYPE_PRESETS:
        return PRESETS[GARMENT_TYPE_PRESETS[garment_type]], f"garment_type {garment_type}"
    for word in re.split(r"[\s,;/&]+", (category or "").lower()):
        if word in CATEGORY_WORDS:
            return PRESETS[CATEGORY_WORDS[word]], f"category {category!r}"
    why = f"garment_type {garment_type}" if garment_type else "no garment_type"
    return PRESETS["product"], why


@dataclass(frozen=True)
class ResolvedPrompt:
    """A prompt with every setting resolved, and where each came from (recorded in the manifest).

    Attributes:
        target (`str`): ``garment`` or a preset name (``person``, ``hair``, ...).
        phrases (`tuple[str, ...]`): what GroundingDINO looks for.
        box_threshold, text_threshold, mask_threshold (`float`): thresholds to use.
        policy (`str`), edges (`str`): see `PromptPreset`.
        preset (`str`): the preset it started from.
        sources (`dict[str, str]`): setting -> ``preset <name>``, ``product.yaml`` or ``argument``.
    """

    target: str
    phrases: tuple[str, ...]
    box_threshold: float
    text_threshold: float
    mask_threshold: float
    policy: str
    edges: str
    preset: str
    sources: dict[str, str]

    @property
    def prompt(self) -> str:
        return " ".join(f"{p}." for p in self.phrases)

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "prompt": self.prompt, "preset": self.preset,
                "box_threshold": self.box_threshold, "text_threshold": self.text_threshold,
                "mask_threshold": self.mask_threshold, "policy": self.policy, "edges": self.edges,
                "sources": dict(self.sources)}


def resolve_prompt(spec: ProductSpec | None = None, target: str = "garment", **overrides) -> ResolvedPrompt:
    """Settle what to segment for ``target`` of a product: preset, then ``product.yaml``, then ``overrides``.

    Args:
        spec (`ProductSpec`, *optional*): the product's settings. For ``garment``, ``prompts.garment`` replaces
            the preset's phrases; for every target, the ``thresholds`` keys *written in* ``product.yaml``
            replace the preset's (keys left out keep the preset's values).
        target (`str`, *optional*, defaults to ``"garment"``): ``garment`` (the preset of the product's
            ``garment_type``) or a preset name/title (``person``, ``hair``, ...).
        **overrides: ``prompt``, ``box_threshold``, ``text_threshold``, ``mask_threshold``, ``policy``,
            ``edges``; `None` values are ignored. These win over everything (e.g. command-line options).

    Returns:
        `ResolvedPrompt`.
    """
    if target == "garment":
        preset, why = preset_for_garment_type(spec.garment_type if spec else None, spec.category if spec else None)
        origin = f"preset {preset.name} ({why})"
    else:
        preset = get_preset(target)
        origin = f"preset {preset.name}"
    values: dict[str, Any] = {
        "phrases": preset.phrases, "box_threshold": preset.box_threshold, "text_threshold": preset.text_threshold,
        "mask_threshold": DEFAULT_MASK_THRESHOLD, "policy": preset.policy, "edges": preset.edges,
    }
    sources = {k: origin for k in values}
    if spec is not None:
        if target == "garment" and spec.prompts.garment:
            values["phrases"] = tuple(split_phrases(spec.prompts.garment))
            sources["phrases"] = "product.yaml prompts.garment"
        for key in sorted(spec.thresholds.model_fields_set):
            values[key] = float(getattr(spec.thresholds, key))
            sources[key] = f"product.yaml thresholds.{key}"
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "prompt":
            named = find_preset(value) if isinstance(value, str) else None
            values["phrases"] = named.phrases if named else tuple(split_phrases(value))
        elif key in values:
            values[key] = value
        else:
            raise TypeError(f"resolve_prompt() got an unexpected override {key!r}")
        sources["phrases" if key == "prompt" else key] = "argument"
    return ResolvedPrompt(target=target, preset=preset.name, sources=sources, **values)
