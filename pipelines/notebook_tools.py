"""Helpers for the analyst notebooks (notebooks/01..03): your own photos, threshold sweeps, boxes drawn
over photos, and interactive controls that degrade to plain output.

- `load_photos`: a folder of your photos (any format `pipelines.imageio.load_image` reads), or the
  built-in samples when no folder is given. A ``masks/<stem>.png`` next to a photo is read as its ground
  truth (white = the target), so IoU can be shown.
- `product_from_folder`: a folder of photos (and optionally its ``product.yaml``) as one SKU of a
  temporary products folder, for the notebooks that render.
- `threshold_sweep`: grounded-sam over a grid of ``box_threshold`` x ``text_threshold`` (no retries, so
  each cell shows exactly its thresholds), with the boxes, scores and the mask of each cell.
- `classic_sweep`: the classic engine's own knobs: the person mask's threshold, or the product cutout's
  background ``tolerance`` (and GrabCut refinement on/off).
- `draw_boxes`: boxes with their label and score over a photo (rejected whole-person boxes dashed grey).
- `controls`: ipywidgets sliders/boxes/pickers calling a function again on every change, in place.
  ipywidgets comes with the ``notebooks`` extra (``pip install -e '.[notebooks]'``); without it, or with
  ``VITRINE_NOTEBOOK_STATIC=1`` (what CI sets when nbclient runs the notebooks headless), the function is
  called once with the default values and its output stays plain cell output.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import InputError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".heic", ".avif")


def load_photos(folder: str | Path | None = None, *, size: int = 384, names: Sequence[str] | None = None
                ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Photos to try segmentation on: ``{name: (HxWx3 uint8 RGB, HxW uint8 truth or None)}``.

    Args:
        folder (`str | Path`, *optional*): a folder of your photos (not recursive; ``masks/<stem>.png``
            files are ground truth). `None`: the built-in samples (`pipelines.samples.sample_images`).
        size (`int`, *optional*, defaults to 384): longer side the photos are downscaled to (samples are
            drawn at this side), pixels.
        names (`Sequence[str]`, *optional*): only these names (sample names, or photo file stems).

    Raises:
        `InputError`: the folder does not exist or holds no photo (naming the folder).
    """
    if folder is None:
        from pipelines.samples import sample_images

        return {n: pair for n, pair in sample_images(size).items() if names is None or n in names}
    from PIL import Image

    from pipelines.imageio import load_image

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError("photo folder not found", path=root, key="photos")
    out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for p in sorted(root.iterdir(), key=lambda q: q.name.lower()):
        if p.name.startswith(".") or p.suffix.lower() not in PHOTO_SUFFIXES or not p.is_file():
            continue
        if names is not None and p.stem not in names:
            continue
        img = load_image(p, max_side=size)
        truth = None
        tp = root / "masks" / f"{p.stem}.png"
        if tp.is_file():
            with Image.open(tp) as t:
                truth = np.asarray(t.convert("L").resize(img.rgb.shape[1::-1], Image.Resampling.NEAREST))
            truth = np.where(truth >= 128, 255, 0).astype(np.uint8)
        out[p.stem] = (img.rgb, truth)
    if not out:
        raise InputError(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in the folder", path=root, key="photos")
    return out


def product_from_folder(folder: str | Path, products: str | Path, sku: str | None = None) -> Path:
    """Copy a folder of photos (with its ``product.yaml`` and ``masks/`` if any) into ``products/<sku>``.

    Returns:
        `Path`: the new product folder (load it with `pipelines.product.load_product`).

    Raises:
        `InputError`: the folder does not exist.
    """
    src = Path(folder).expanduser()
    if not src.is_dir():
        raise InputError("product folder not found", path=src, key="product_dir")
    dest = Path(products) / (sku or src.name)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".*"))
    return dest


@dataclass
class SweepCell:
    """One cell of a threshold sweep.

    Attributes:
        params (`dict`): the knob values of this cell (e.g. ``{"box_threshold": 0.3, "text_threshold": 0.25}``).
        mask (`np.ndarray | None`): HxW uint8 0/255, `None` when the engine refused (see ``error``).
        report (`dict`): `pipelines.segmentation.api.segment_image_detailed`'s report (boxes, scores, attempts).
        error (`str | None`): why the engine refused.
    """

    params: dict[str, Any]
    mask: np.ndarray | None
    report: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def area(self) -> float:
        return 0.0 if self.mask is None else float((self.mask > 0).mean())


def threshold_sweep(image: np.ndarray, prompt: str, box_thresholds: Iterable[float],
                    text_thresholds: Iterable[float], *, model_root: str | Path | None = None,
                    **options) -> list[SweepCell]:
    """grounded-sam over every ``(box_threshold, text_threshold)`` pair, without relaxed retries.

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB.
        prompt (`str`): what to segment (a preset name such as ``"upper garment"`` or free text).
        box_thresholds, text_thresholds (`Iterable[float]`): the grid, each in [0, 1].
        model_root (`str | Path`, *optional*): where the weights are (``vitrine dev tiny-models`` for CI).
        **options: more grounded-sam options (``policy``, ``person_box_cover``, ``exclude``...).

    Returns:
        `list[SweepCell]`, row-major (box threshold outer).
    """
    from pipelines.segmentation.api import segment_image_detailed

    cells = []
    for bt in box_thresholds:
        for tt in text_thresholds:
            params = {"box_threshold": float(bt), "text_threshold": float(tt)}
            try:
                mask, report = segment_image_detailed(image, prompt, engine="grounded-sam", model_root=model_root,
                                                      retry=False, **params, **options)
                cells.append(SweepCell(params, mask, report))
            except InputError as exc:
                cells.append(SweepCell(params, None, error=str(exc)))
    return cells


def classic_sweep(image: np.ndarray, prompt: str, values: Iterable[float]) -> list[SweepCell]:
    """The classic engine's own knob over ``values``: the person mask threshold (prompt ``person``), or
    the product cutout's background ``tolerance`` in Lab units (other prompts; GrabCut refinement on).

    Returns:
        `list[SweepCell]` in the order of ``values``; a refusal (e.g. a garment on a person photo) is a
        cell with ``error`` set.
    """
    from pipelines.segmentation.classic import check_classic_can_isolate, classic_target

    cells = []
    try:
        target = classic_target(prompt)
        if target == "product":
            check_classic_can_isolate(image, prompt)
    except InputError as exc:
        return [SweepCell({"value": v}, None, error=str(exc)) for v in values]
    if target == "person":
        from pipelines.segmentation.person import segment_person

        soft = segment_person(image)
        return [SweepCell({"threshold": float(v)}, np.where(soft >= v, 255, 0).astype(np.uint8),
                          {"engine": "classic", "target": "person"}) for v in values]
    from pipelines.segmentation.cutout import cutout_product
    from pipelines.errors import NothingFoundError

    for v in values:
        try:
            mask = cutout_product(image, tolerance=float(v)).mask
        except NothingFoundError as exc:
            cells.append(SweepCell({"tolerance": float(v)}, None, error=str(exc)))
            continue
        cells.append(SweepCell({"tolerance": float(v)}, mask, {"engine": "classic", "target": "product"}))
    return cells


def overlay(rgb: np.ndarray, mask: np.ndarray | None, color=(255, 0, 80), strength: float = 0.5) -> np.ndarray:
    """The mask tinted over the photo (HxWx3 uint8); the photo itself when ``mask`` is `None`."""
    out = rgb.astype(np.float32)
    if mask is not None:
        sel = mask > 0
        out[sel] = out[sel] * (1 - strength) + np.array(color, np.float32) * strength
    return out.astype(np.uint8)


def draw_boxes(rgb: np.ndarray, boxes: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]] = ()
               ) -> np.ndarray:
    """Boxes (``{"box": [x0, y0, x1, y1], "score", "label", "used"}``) drawn over a copy of ``rgb``.

    Used boxes are green, other kept boxes yellow, rejected whole-person boxes grey; each is labelled
    ``label score``.
    """
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    thick = max(1, round(max(rgb.shape[:2]) / 250))
    items = [(b, (0, 200, 0) if b.get("used", True) else (230, 200, 0)) for b in boxes]
    items += [(r, (150, 150, 150)) for r in rejected]
    for b, colour in items:
        x0, y0, x1, y1 = (int(round(v)) for v in b["box"])
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, thick)
        score = b.get("score")
        text = f"{b.get('label') or ''} {score:.2f}" if isinstance(score, (int, float)) else str(b.get("label") or "")
        cv2.putText(out, text.strip(), (x0 + 2, max(10, y0 + 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.35 * thick, colour, 1, cv2.LINE_AA)
    return out


def widgets_available() -> bool:
    """Whether interactive controls can be shown: ipywidgets importable and ``VITRINE_NOTEBOOK_STATIC`` unset
    (`VitrineSettings.notebook_static`: a notebook is an entry point, so its settings are read here)."""
    from pipelines.settings import load_settings

    if load_settings().notebook_static:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def controls(fn: Callable[..., Any], **specs: Any) -> Any:
    """Call ``fn(**values)`` now with each control's default, and again on every change when widgets work.

    Each spec is ``(min, max, step, default)`` for a slider, a `list` of choices (the first is the
    default) for a picker, or a `str` for a text box. Headless (no ipywidgets, or
    ``VITRINE_NOTEBOOK_STATIC=1``) only the first call happens and its output is plain cell output.

    Returns:
        the ipywidgets box shown (or `None` headless).
    """
    defaults = {k: (s[3] if isinstance(s, tuple) else s[0] if isinstance(s, list) else s) for k, s in specs.items()}
    if not widgets_available():
        fn(**defaults)
        print("(static output: install the notebooks extra and open this notebook in JupyterLab for "
              "interactive controls)")
        return None
    import ipywidgets as w
    from IPython.display import display

    made = {}
    for k, s in specs.items():
        if isinstance(s, tuple):
            cls = w.IntSlider if all(isinstance(v, int) for v in s) else w.FloatSlider
            made[k] = cls(min=s[0], max=s[1], step=s[2], value=s[3], description=k, continuous_update=False)
        elif isinstance(s, list):
            made[k] = w.Dropdown(options=s, value=s[0], description=k)
        else:
            made[k] = w.Text(value=str(s), description=k, continuous_update=False)
    out = w.interactive_output(fn, made)
    box = w.VBox([w.HBox(list(made.values())), out])
    display(box)
    return box
