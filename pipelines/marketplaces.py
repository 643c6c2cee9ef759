"""Marketplace image rule sets: data in ``pipelines/data/marketplaces.yaml``, loaded and checked here.

A SKU's ``product.yaml`` ``marketplaces: [amazon, zalando]`` names rule sets. The catalog checks its
generic main image (``main.png``/``main.jpg``) against each; a marketplace whose rules that image meets
shares it, and one whose rules differ (Zalando's portrait 1:1.44) gets its own output
``main-<marketplace>.png`` plus the export in the marketplace's format, rendered at its ``render`` size.
Each output records the rules it was checked against and the per-rule result (``marketplace_rules``).
Format of the data file and of the records: docs/catalog-format.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from pipelines.errors import InputError

RULES_PATH = Path(__file__).parent / "data" / "marketplaces.yaml"
_RULE_KEYS = {"background", "aspect", "aspect_tolerance", "min_size", "max_size", "min_longest_side",
              "max_longest_side", "max_megapixels", "fill", "formats", "colour_spaces", "max_file_mb"}


@dataclass(frozen=True)
class Marketplace:
    """One marketplace's rule set.

    Attributes:
        key (`str`): lower-case name used in ``product.yaml`` (``amazon``).
        name (`str`): display name.
        rules (`dict`): the rules (keys in ``_RULE_KEYS``; `None` = no rule), see docs/catalog-format.md.
        render (`dict`): how to render its own main image when the generic one fails: ``size`` (w, h),
            ``fill`` in (0, 1], ``format`` (``jpeg``, ``png`` or ``webp``).
        sources (`tuple[str, ...]`): where the rules were read.
    """

    key: str
    name: str
    rules: dict[str, Any]
    render: dict[str, Any]
    sources: tuple[str, ...] = field(default_factory=tuple)


def load_rule_sets(path: str | Path = RULES_PATH) -> dict[str, Marketplace]:
    """Read and check a marketplace rules file.

    Raises:
        `InputError`: unreadable YAML, or a rule set with an unknown rule or a bad ``render``; names the
            file and the dotted key.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read marketplace rules: {exc}", path=path) from None
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("marketplaces"), dict):
        raise InputError("expected `version: 1` and a `marketplaces:` mapping", path=path)
    out = {}
    for key, entry in data["marketplaces"].items():
        where = f"marketplaces.{key}"
        if not isinstance(entry, dict) or not isinstance(entry.get("rules"), dict):
            raise InputError("each marketplace needs a `rules:` mapping", path=path, key=where)
        unknown = set(entry["rules"]) - _RULE_KEYS
        if unknown:
            raise InputError(f"unknown rule {sorted(unknown)[0]!r}; known: {', '.join(sorted(_RULE_KEYS))}",
                             path=path, key=f"{where}.rules")
        render = entry.get("render") or {}
        size = render.get("size")
        if (not isinstance(size, list) or len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size)
                or not 0 < float(render.get("fill", 0)) <= 1 or render.get("format") not in ("jpeg", "png", "webp")):
            raise InputError("render needs size [w, h], fill in (0, 1] and format jpeg|png|webp", path=path,
                             key=f"{where}.render")
        if not entry.get("sources"):
            raise InputError("cite the `sources:` the rules were read from", path=path, key=f"{where}.sources")
        out[str(key).lower()] = Marketplace(key=str(key).lower(), name=str(entry.get("name", key)),
                                            rules=dict(entry["rules"]), render=dict(render),
                                            sources=tuple(entry["sources"]))
    return out


@lru_cache(maxsize=1)
def rule_sets() -> dict[str, Marketplace]:
    """The shipped rule sets, by key (read once per process)."""
    return load_rule_sets(RULES_PATH)


def marketplace_names() -> list[str]:
    """Keys of the shipped rule sets, sorted."""
    return sorted(rule_sets())


def get_marketplace(name: str) -> Marketplace:
    """The rule set ``name`` (case-insensitive); `InputError` listing the known ones otherwise."""
    found = rule_sets().get(str(name).lower())
    if found is None:
        raise InputError(f"unknown marketplace {name!r}; known marketplaces: {', '.join(marketplace_names())}",
                         key="marketplaces")
    return found


def _ratio_ok(w: int, h: int, ratio: list, tol: float) -> bool:
    return math.isclose(w / h, ratio[0] / ratio[1], rel_tol=tol)


def check_rules(mp: Marketplace, *, width: int, height: int, fmt: str, file_bytes: int, fill: float | None,
                white_background: bool | None, colour_space: str = "sRGB") -> dict[str, Any]:
    """Check one deliverable image against a marketplace's rules.

    Args:
        mp (`Marketplace`): the rule set.
        width, height (`int`): the image's size in pixels.
        fmt (`str`): its file format (``jpeg``, ``png``, ``webp``).
        file_bytes (`int`): its file size.
        fill (`float`, *optional*): product's longer side over the canvas side (`None`: not measured).
        white_background (`bool`, *optional*): the `pipelines.quality.checks.white_background_check` result.
        colour_space (`str`, *optional*, defaults to ``"sRGB"``): what the file is encoded in.

    Returns:
        `dict`: ``marketplace``, ``ok`` (every rule passed), ``rules``: rule name -> ``{"ok", "required",
        "measured"}`` for every rule the marketplace sets.
    """
    r = mp.rules
    res: dict[str, dict[str, Any]] = {}

    def put(name: str, ok: bool, required: Any, measured: Any) -> None:
        res[name] = {"ok": bool(ok), "required": required, "measured": measured}

    if r.get("background") == "white":
        put("background", bool(white_background), "pure white #FFFFFF", "white" if white_background else "not white")
    aspect = r.get("aspect")
    if aspect:
        options = aspect if isinstance(aspect[0], list) else [aspect]
        tol = float(r.get("aspect_tolerance", 0.01))
        put("aspect", any(_ratio_ok(width, height, a, tol) for a in options),
            " or ".join(f"{a[0]}:{a[1]}" for a in options), f"{width}:{height}")
    if r.get("min_size"):
        mw, mh = r["min_size"]
        put("min_size", width >= mw and height >= mh, f">= {mw}x{mh}", f"{width}x{height}")
    if r.get("max_size"):
        mw, mh = r["max_size"]
        put("max_size", width <= mw and height <= mh, f"<= {mw}x{mh}", f"{width}x{height}")
    if r.get("min_longest_side"):
        put("min_longest_side", max(width, height) >= r["min_longest_side"], f">= {r['min_longest_side']} px",
            max(width, height))
    if r.get("max_longest_side"):
        put("max_longest_side", max(width, height) <= r["max_longest_side"], f"<= {r['max_longest_side']} px",
            max(width, height))
    if r.get("max_megapixels"):
        mpx = round(width * height / 1e6, 3)
        put("max_megapixels", mpx <= r["max_megapixels"], f"<= {r['max_megapixels']} MP", mpx)
    if r.get("fill"):
        lo, hi = r["fill"]
        put("fill", fill is not None and lo - 0.005 <= fill <= hi + 0.005, f"{lo}-{hi}", fill)
    if r.get("formats"):
        put("format", fmt in r["formats"], r["formats"], fmt)
    if r.get("colour_spaces"):
        put("colour_space", colour_space in r["colour_spaces"], r["colour_spaces"], colour_space)
    if r.get("max_file_mb"):
        mb = round(file_bytes / 1e6, 3)
        put("max_file_mb", mb <= r["max_file_mb"], f"<= {r['max_file_mb']} MB", mb)
    return {"marketplace": mp.key, "ok": all(v["ok"] for v in res.values()), "rules": res}


def rule_fill_range(mp: Marketplace) -> tuple[float, float] | None:
    """The marketplace's allowed fill range, or `None` when it sets none."""
    f = mp.rules.get("fill")
    return (float(f[0]), float(f[1])) if f else None
