"""Product folders: the ``product.yaml`` schema, SKU names, discovery and content hashes.

A products root holds one folder per SKU::

    products/
      SKU-123/
        front.jpg  back.jpg       # product photos (*.jpg|jpeg|png|webp, any case)
        product.yaml              # optional: see ProductSpec
        masks/garment.png         # optional mask overrides painted by an analyst

Folders whose names start with ``.`` or ``_`` are ignored, as are hidden files.
"""

from __future__ import annotations

import difflib
import errno
import json
import logging
import os
import reprlib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.errors import SKU_FAILURE_LOG, InputError
from pipelines.imageio import IMAGE_SUFFIXES, sha256_bytes, sha256_file
from pipelines.marketplaces import marketplace_names
from pipelines.tryon_spec import TryOnSpec  # the ``tryon`` key of a try-on SKU (a person photo plus garments)

logger = logging.getLogger(__name__)

SPEC_FILENAMES = ("product.yaml", "product.yml")
"""Names of the optional per-product configuration file, in order of preference."""

SKU_MAX_LENGTH = 128
_SKU_PUNCTUATION = frozenset("-_. ")
_SEED_MAX = 2**32 - 1

NAME_MAX_BYTES = 255
"""Longest file or folder name (one path component, UTF-8 bytes) on the usual file systems (ext4, XFS, APFS)."""
SKU_NAME_OVERHEAD_BYTES = 40
"""Bytes Vitrine appends to a SKU in the names it creates: ``.staging/<sku>.<pid>.<hex8>``, ``.locks/<sku>.lock``,
``.trash/<sku>.<hex8>``, plus room for derived names (exports, thumbnails)."""
SKU_MAX_BYTES = NAME_MAX_BYTES - SKU_NAME_OVERHEAD_BYTES
"""A SKU's longest name in UTF-8 bytes (215): a 128-character Devanagari name is 384 bytes and is refused."""
IMAGE_NAME_OVERHEAD_BYTES = 64
"""Bytes Vitrine adds to a photo's stem in the names it creates (``work/alt-<stem>.preserve-mask.png`` and its
temporary file ``.<name>.<random>.tmp``, ``-jpg`` de-duplication, ``.edit-N`` versions)."""
IMAGE_STEM_MAX_BYTES = NAME_MAX_BYTES - IMAGE_NAME_OVERHEAD_BYTES
"""A product photo's longest stem (name without suffix) in UTF-8 bytes (191)."""

SEEDS_MAX = 16
"""Most ``seeds`` one product.yaml may list (each seed renders one image per lifestyle background)."""
IMAGES_MAX = 32
"""Most product photos one SKU folder may hold."""
OUTPUTS_MAX = 48
"""Most rendered images (main, alternates, lifestyle backgrounds x seeds) one SKU may plan."""

UNSUPPORTED_PHOTO_SUFFIXES = (
    ".heic", ".heif", ".avif", ".tif", ".tiff", ".bmp", ".gif", ".jxl", ".jp2", ".psd",
    ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf",
)
"""Photo formats found in product folders that Vitrine does not read: reported, never silently ignored."""

GarmentType = Literal["upper", "lower", "dress", "outerwear", "shoes", "bag", "accessory", "other"]
Background = Literal["white", "studio", "texture"]


# --------------------------------------------------------------------------------------------------
# Schema of product.yaml
# --------------------------------------------------------------------------------------------------


def _check_relative_path(value: str) -> str:
    """A path relative to the product folder that cannot leave it (no absolute path, no ``..``)."""
    if not value or not value.strip():
        raise ValueError("must be a non-empty relative path")
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    if (
        PurePosixPath(value).is_absolute()
        or PureWindowsPath(value).is_absolute()
        or PureWindowsPath(value).drive
    ):
        raise ValueError("must be a path relative to the product folder, not an absolute path")
    parts = value.replace("\\", "/").split("/")
    if ".." in parts:
        raise ValueError("must stay inside the product folder: '..' is not allowed")
    return value


RelativePath = Annotated[str, AfterValidator(_check_relative_path)]


def _known_marketplace(value: str) -> str:
    """A marketplace rule set shipped in ``pipelines/data/marketplaces.yaml`` (case-insensitive, stored lower-case)."""
    key = value.strip().lower()
    if key not in marketplace_names():
        close = difflib.get_close_matches(key, marketplace_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown marketplace {value!r}{hint}; known marketplaces: {', '.join(marketplace_names())}")
    return key


def _no_duplicates(values: list) -> list:
    seen = set()
    duplicates = [v for v in values if v in seen or seen.add(v)]
    if duplicates:
        raise ValueError(f"lists {duplicates[0]!r} more than once")
    return values


class PromptSpec(BaseModel):
    """Text prompts for generation and segmentation. Every field is optional; `None` uses the default.

    Args:
        garment (`str`, *optional*): what the product is, e.g. ``"red wool cardigan"`` (also the
            segmentation text prompt).
        person (`str`, *optional*): the model wearing it, e.g. ``"woman in her 30s, natural pose"``.
        scene (`str`, *optional*): the setting, e.g. ``"bright studio, soft shadows"``.
        negative (`str`, *optional*): what to avoid.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    garment: str | None = None
    person: str | None = None
    scene: str | None = None
    negative: str | None = None


class ThresholdSpec(BaseModel):
    """Segmentation thresholds, each in ``[0, 1]``.

    Args:
        box_threshold (`float`, *optional*, defaults to 0.35): minimum box confidence for the
            open-vocabulary detector (GroundingDINO) to keep a box.
        text_threshold (`float`, *optional*, defaults to 0.25): minimum token-to-box similarity for a
            prompt word to be attached to a box as its label.
        mask_threshold (`float`, *optional*, defaults to 0.5): probability above which a mask pixel is
            foreground.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    box_threshold: float = Field(default=0.35, ge=0.0, le=1.0)
    text_threshold: float = Field(default=0.25, ge=0.0, le=1.0)
    mask_threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class ProductSpec(BaseModel):
    """Contents of a product folder's ``product.yaml``. Unknown keys are errors; every key is optional.

    Args:
        title (`str`, *optional*): product title.
        category (`str`, *optional*): free-text category, e.g. ``"tops"``.
        garment_type (`str`, *optional*): one of ``upper``, ``lower``, ``dress``, ``outerwear``,
            ``shoes``, ``bag``, ``accessory``, ``other``.
        prompts (`PromptSpec`, *optional*): generation/segmentation prompts.
        backgrounds (`list[str]`, *optional*, defaults to ``["white", "studio", "texture"]``):
            background styles to render, each one of ``white``, ``studio``, ``texture``, no repeats.
        marketplaces (`list[str]`, *optional*, defaults to ``[]``): marketplace rule sets to check the main
            image against, each one of `pipelines.marketplaces.marketplace_names` (``amazon``, ``etsy``,
            ``shopify``, ``zalando``; case-insensitive), no repeats. A marketplace whose rules the generic
            main image does not meet gets its own main image (docs/catalog-format.md).
        seeds (`list[int]`, *optional*, defaults to ``[0]``): generation seeds, each in ``[0, 2**32 - 1]``,
            at least one, at most `SEEDS_MAX` (16), no repeats.
        thresholds (`ThresholdSpec`, *optional*): segmentation thresholds.
        masks (`dict[str, str]`, *optional*, defaults to ``{}``): mask overrides, target name (e.g.
            ``garment``) -> path relative to the product folder (no absolute paths, no ``..``).
        commercial (`bool`, *optional*, defaults to `False`): the images are for commercial use, so
            only commercially licensed models may be used.
        main_image (`str`, *optional*): file name of the image to use as the main product shot;
            defaults to the first image in name order.
        tryon (`TryOnSpec`, *optional*): try-on settings for a folder holding a person photo (``person.*``)
            and garment photos (method, which photos, prompt); see `pipelines.tryon_spec.TryOnSpec`. Giving
            the key makes the folder a try-on SKU (it must then hold a person photo).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    title: str | None = None
    category: str | None = None
    garment_type: GarmentType | None = None
    prompts: PromptSpec = Field(default_factory=PromptSpec)
    backgrounds: list[Background] = Field(default_factory=lambda: ["white", "studio", "texture"])
    marketplaces: list[Annotated[str, Field(min_length=1), AfterValidator(_known_marketplace)]] = Field(
        default_factory=list)
    seeds: list[Annotated[int, Field(ge=0, le=_SEED_MAX)]] = Field(default_factory=lambda: [0], min_length=1,
                                                                   max_length=SEEDS_MAX)
    thresholds: ThresholdSpec = Field(default_factory=ThresholdSpec)
    masks: dict[Annotated[str, Field(min_length=1)], RelativePath] = Field(default_factory=dict)
    commercial: bool = False
    main_image: RelativePath | None = None
    tryon: TryOnSpec = Field(default_factory=TryOnSpec)

    @field_validator("backgrounds", "marketplaces", "seeds")
    @classmethod
    def _unique(cls, values: list) -> list:
        return _no_duplicates(values)


# --------------------------------------------------------------------------------------------------
# Loading product.yaml
# --------------------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable key: let the default constructor report it
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _loc_to_key(loc: tuple) -> str:
    return ".".join(str(part) for part in loc)


def _allowed_keys(loc: tuple) -> list[str]:
    """Field names allowed next to the (unknown) key at ``loc``."""
    model: type[BaseModel] | None = ProductSpec
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if model is not None else None
        annotation = field.annotation if field is not None else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return list(model.model_fields) if model is not None else []


_SHORT_REPR = reprlib.Repr()  # Python 3.11's Repr takes no arguments
_SHORT_REPR.maxlevel, _SHORT_REPR.maxstring, _SHORT_REPR.maxother = 2, 80, 80
_SHORT_REPR.maxtuple = _SHORT_REPR.maxlist = _SHORT_REPR.maxdict = _SHORT_REPR.maxset = 4


def _describe_error(error: dict) -> str:
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "extra_forbidden":
        allowed = _allowed_keys(loc)
        message = "unknown key"
        close = difflib.get_close_matches(str(loc[-1]) if loc else "", allowed, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        if allowed:
            message += f"; allowed keys here: {', '.join(allowed)}"
        return message
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    if error.get("type") != "missing" and "input" in error:
        shown = _SHORT_REPR.repr(error["input"])  # bounded: a YAML alias bomb must not expand here
        if len(shown) > 80:
            shown = shown[:77] + "..."
        message += f" (got {shown})"
    return message


def _validation_error(path: Path, exc: ValidationError) -> InputError:
    errors = exc.errors()
    first = errors[0]
    key = _loc_to_key(tuple(first.get("loc", ())))
    message = _describe_error(first)
    if len(errors) > 1:
        more = "; ".join(f"{_loc_to_key(tuple(e.get('loc', ())))}: {_describe_error(e)}" for e in errors[1:])
        message += f" (and {len(errors) - 1} more: {more})"
    return InputError(message, path, key or None)


def load_product_spec(path: str | Path) -> ProductSpec:
    """Read and validate a ``product.yaml``.

    Args:
        path (`str` or `Path`): the YAML file. An empty file (or one holding only comments) gives the
            defaults.

    Returns:
        `ProductSpec`: the validated settings.

    Raises:
        InputError: unreadable file, invalid YAML, a top level that is not a mapping, duplicate or
            unknown keys, or bad values. The error names the file and the dotted key (e.g.
            ``thresholds.box_threshold`` or ``seeds.0``) and says what is wrong in plain words.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise InputError("file not found", path) from e
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text: {e.reason} at byte {e.start}", path) from e
    except OSError as e:
        raise InputError(f"cannot read the file: {e.strerror or e}", path) from e
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise InputError(f"not valid YAML{where}: {problem}", path) from e
    except RecursionError:
        raise InputError("the YAML is nested too deeply to read", path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(
            f"the top level must be a mapping of keys to values, got a {type(data).__name__}", path
        )
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise InputError(f"keys must be text, got {bad_keys[0]!r}", path, str(bad_keys[0]))
    try:
        return ProductSpec.model_validate(data)
    except ValidationError as e:
        raise _validation_error(path, e) from e


# --------------------------------------------------------------------------------------------------
# SKUs and product folders
# --------------------------------------------------------------------------------------------------


@dataclass
class Product:
    """A validated product folder.

    Args:
        sku (`str`): the folder's name.
        dir (`Path`): the folder.
        images (`list[Path]`): its image files (not hidden, suffix in `IMAGE_SUFFIXES`, any case),
            sorted by name (case-insensitively), never empty.
        spec (`ProductSpec`): settings from ``product.yaml``, or the defaults.
        spec_path (`Path` or `None`): the ``product.yaml``/``product.yml`` read, if any.
        warnings (`list[str]`, *optional*): problems that do not stop the SKU (a ``.heic`` photo next to
            JPEGs is not read); shown by the CLI and listed in the batch report.
    """

    sku: str
    dir: Path
    images: list[Path]
    spec: ProductSpec
    spec_path: Path | None
    warnings: list[str] = field(default_factory=list)

    @property
    def main_image(self) -> Path:
        """The main product shot: ``spec.main_image`` if set, else the first image."""
        if self.spec.main_image is not None:
            return self.dir / self.spec.main_image
        return self.images[0]

    def mask_override(self, target: str) -> Path | None:
        """The analyst-painted mask for ``target`` (e.g. ``"garment"``), or `None`."""
        rel = self.spec.masks.get(target)
        return self.dir / rel if rel is not None else None


def validate_sku(name: str) -> str:
    """Check that a folder name is a usable SKU and return it in Unicode NFC form.

    A SKU is 1-128 characters (at most `SKU_MAX_BYTES` = 215 bytes of UTF-8) of letters in any script with
    their combining marks (Devanagari vowel signs, the accent of a macOS-decomposed ``café``), digits,
    ``-``, ``_``, ``.`` and spaces; it does not start with ``.``, ``_`` or a combining mark, does not start or
    end with a space, and contains no ``..``, ``/``, ``\\``, NUL or control characters. The name is checked
    and returned NFC-normalised (``"cafe\u0301"`` -> ``"caf\u00e9"``): two folders whose names are equal
    after NFC are the same SKU (`discover_products` reports them as a collision).

    Raises:
        InputError: the name breaks one of these rules; the message says which.
    """
    if not isinstance(name, str):
        raise InputError(f"a SKU must be text, got {type(name).__name__}", key="sku")
    if not name:
        raise InputError("a SKU cannot be empty", key="sku")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in name):  # undecodable bytes in a folder name
        raise InputError(f"SKU {name!r} is not valid UTF-8; rename the folder", key="sku")
    name = unicodedata.normalize("NFC", name)
    shown = repr(name)
    if len(name) > SKU_MAX_LENGTH:
        raise InputError(
            f"SKU {name[:40]!r}... is {len(name)} characters long; the limit is {SKU_MAX_LENGTH}", key="sku"
        )
    n_bytes = len(name.encode("utf-8"))
    if n_bytes > SKU_MAX_BYTES:
        raise InputError(
            f"SKU {name[:40]!r}... is {n_bytes} bytes long in UTF-8; the limit is {SKU_MAX_BYTES} bytes (file "
            f"names hold {NAME_MAX_BYTES} bytes and Vitrine adds up to {SKU_NAME_OVERHEAD_BYTES}): shorten the "
            "folder name", key="sku",
        )
    for ch in name:
        if ch in "/\\":
            raise InputError(f"SKU {shown} must not contain {ch!r}", key="sku")
        category = unicodedata.category(ch)
        if ch == "\x00" or category.startswith("C"):
            raise InputError(f"SKU {shown} contains a control or invisible character {ch!r}", key="sku")
        if not (ch.isalnum() or ch in _SKU_PUNCTUATION or category.startswith("M")):
            raise InputError(
                f"SKU {shown} contains {ch!r}; only letters (with their accents and marks), digits, '-', '_', '.' "
                "and spaces are allowed",
                key="sku",
            )
    if name[0] in "._":
        raise InputError(f"SKU {shown} must not start with {name[0]!r}", key="sku")
    if unicodedata.category(name[0]).startswith("M"):
        raise InputError(f"SKU {shown} must not start with a combining mark", key="sku")
    if ".." in name:
        raise InputError(f"SKU {shown} must not contain '..'", key="sku")
    if name != name.strip():
        raise InputError(f"SKU {shown} must not start or end with a space", key="sku")
    return name


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _check_link(path: Path, root: Path) -> None:
    """Refuse a symlink that is broken or whose target lies outside ``root`` (already resolved)."""
    if not path.is_symlink():
        return
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError) as e:
        raise InputError("is a broken symbolic link", path) from e
    if not _is_within(target, root):
        raise InputError(f"is a symbolic link to {target}, outside the products root {root}", path)


def _find_spec(folder: Path) -> Path | None:
    found = [
        folder / name for name in SPEC_FILENAMES if (folder / name).exists() or (folder / name).is_symlink()
    ]
    if len(found) > 1:
        raise InputError(f"both {found[0].name} and {found[1].name} exist; keep one", folder)
    return found[0] if found else None


def load_product(dir: Path, *, root: Path | None = None) -> Product:
    """Validate one product folder.

    Args:
        dir (`Path`): the product folder; its name is the SKU.
        root (`Path`, *optional*, defaults to ``dir.parent``): the products root. Symbolic links (the
            folder itself, its images, ``product.yaml``, mask overrides) must resolve inside it.

    Returns:
        `Product`: SKU, images (sorted), settings.

    Raises:
        InputError: bad SKU name, missing folder, a link leaving ``root``, no image, invalid
            ``product.yaml``, or a mask override / ``main_image`` that does not exist in the folder.
    """
    folder = Path(dir)
    root_resolved = Path(root if root is not None else folder.parent).resolve()
    try:
        sku = validate_sku(folder.name)  # NFC: a macOS-decomposed "café" is the SKU "café"
    except InputError as e:
        raise InputError(e.message, folder) from e
    _check_link(folder, root_resolved)
    if not _is_within(folder.resolve(), root_resolved):
        raise InputError(f"the product folder is outside the products root {root_resolved}", folder)
    if not folder.exists():
        raise InputError("product folder not found", folder)
    if not folder.is_dir():
        raise InputError("is not a folder", folder)

    # 1. Images.
    images: list[Path] = []
    unsupported: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        raise InputError(f"cannot list the folder: {e.strerror or e}", folder) from e
    for entry in entries:
        if not entry.name.startswith(".") and entry.name.lower().endswith(UNSUPPORTED_PHOTO_SUFFIXES):
            unsupported.append(entry.name)
        if entry.name.startswith(".") or not entry.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        path = folder / entry.name
        _check_link(path, root_resolved)
        if path.is_file():
            if "\\" in entry.name:  # a Windows path separator: catalog file names may not hold one
                raise InputError("the file name contains '\\'; rename the file without it", path)
            images.append(path)
    images.sort(key=lambda p: (p.name.casefold(), p.name))
    unsupported.sort()
    supported = ", ".join(IMAGE_SUFFIXES)
    if not images:
        if unsupported:
            raise InputError(
                f"no product image found: {', '.join(unsupported)} {'is' if len(unsupported) == 1 else 'are'} "
                f"in a format Vitrine does not read; convert to one of {supported} (e.g. export as JPEG)",
                folder,
            )
        raise InputError(f"no product image found (expected files ending in {supported})", folder)
    warnings: list[str] = []
    if unsupported:
        warnings.append(
            f"{folder}: not read (unsupported format; convert to one of {supported}): {', '.join(unsupported)}")
        logger.warning("%s", warnings[-1], extra=SKU_FAILURE_LOG)  # the CLI prints it once, from the report
    if len(images) > IMAGES_MAX:
        raise InputError(f"{len(images)} product photos; the limit is {IMAGES_MAX} per SKU", folder)
    for path in images:  # derived names (work files, temporary files) must fit in a file name
        stem_bytes = len(Path(path.name).stem.encode("utf-8", "surrogateescape"))
        if stem_bytes > IMAGE_STEM_MAX_BYTES:
            raise InputError(
                f"the file name is too long ({stem_bytes} bytes before the suffix; the limit is "
                f"{IMAGE_STEM_MAX_BYTES}, as Vitrine derives names up to {IMAGE_NAME_OVERHEAD_BYTES} bytes longer "
                f"from it): shorten it", path,
            )
    # Every other link in the folder (masks/, stray files) is read too (content hash, mask lookups):
    # none may leave the products root.
    for current, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in dirnames + filenames:
            if not name.startswith("."):
                _check_link(Path(current) / name, root_resolved)

    # 2. Settings.
    spec_path = _find_spec(folder)
    if spec_path is not None:
        _check_link(spec_path, root_resolved)
        if not spec_path.is_file():
            raise InputError("is not a regular file", spec_path)
        spec = load_product_spec(spec_path)
    else:
        spec = ProductSpec()
    where = spec_path if spec_path is not None else folder

    # 3. Files the settings refer to.
    for target, rel in spec.masks.items():
        mask_path = folder / rel
        _check_link(mask_path, root_resolved)
        if not mask_path.is_file():
            raise InputError(
                f"mask override file {rel!r} not found in the product folder", where, f"masks.{target}"
            )
        if not _is_within(mask_path.resolve(), root_resolved):
            raise InputError(
                f"mask override {rel!r} resolves outside the products root", where, f"masks.{target}"
            )
    if spec.main_image is not None:
        main = folder / spec.main_image
        if main not in images:
            names = ", ".join(p.name for p in images)
            raise InputError(
                f"main image {spec.main_image!r} is not one of the product's images ({names})",
                where,
                "main_image",
            )

    _check_output_count(spec, len(images), where)
    return Product(sku=sku, dir=folder, images=images, spec=spec, spec_path=spec_path, warnings=warnings)


def planned_output_count(spec: ProductSpec, n_images: int) -> int:
    """Rendered images a SKU plans: the main image, one alternate per other photo, lifestyle backgrounds x seeds.

    The ``main.jpg`` export (and WebP exports when enabled) are copies of these and not counted.
    """
    lifestyle = sum(1 for bg in spec.backgrounds if bg != "white")
    return 1 + max(0, n_images - 1) + lifestyle * len(spec.seeds)


def _check_output_count(spec: ProductSpec, n_images: int, where: Path) -> None:
    planned = planned_output_count(spec, n_images)
    if planned > OUTPUTS_MAX:
        lifestyle = sum(1 for bg in spec.backgrounds if bg != "white")
        raise InputError(
            f"this SKU would render {planned} images (1 main + {max(0, n_images - 1)} alternates + {lifestyle} "
            f"lifestyle backgrounds x {len(spec.seeds)} seeds); the limit is {OUTPUTS_MAX} per SKU: list fewer "
            "seeds or backgrounds, or split the photos over several SKUs", where, "seeds",
        )


def discover_products(root: Path) -> tuple[list[Product], list[tuple[str, Path, InputError]]]:
    """Find and validate every product folder under ``root``.

    Every immediate subfolder whose name does not start with ``.`` or ``_`` is a SKU. A bad SKU never
    stops the others: it is reported in the failures.

    Args:
        root (`Path`): the products root.

    Returns:
        `tuple`: ``(products, failures)``: valid products sorted by SKU, and ``(sku, folder, error)``
        for each folder that failed validation, sorted by SKU.

    Raises:
        InputError: ``root`` does not exist or is not a folder.
    """
    root = Path(root)
    if not root.exists():
        raise InputError("products folder not found", root)
    if not root.is_dir():
        raise InputError("the products root is not a folder", root)
    products: list[Product] = []
    failures: list[tuple[str, Path, InputError]] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        raise InputError(f"cannot list the folder: {e.strerror or e}", root) from e
    for entry in entries:
        if entry.name.startswith((".", "_")):
            continue
        folder = root / entry.name
        if not folder.is_dir() and not (folder.is_symlink() and not folder.exists()):
            continue  # loose files (README, notes, links to files) are not SKUs; broken links are reported
        try:
            products.append(load_product(folder, root=root))
        except InputError as e:
            logger.warning("skipping SKU %r: %s", entry.name, e, extra=SKU_FAILURE_LOG)
            failures.append((entry.name, folder, e))
        except OSError as e:
            error = InputError(f"cannot read the product folder: {e.strerror or e}", folder)
            logger.warning("skipping SKU %r: %s", entry.name, error, extra=SKU_FAILURE_LOG)
            failures.append((entry.name, folder, error))
    by_sku: dict[str, list[Product]] = {}
    for p in products:
        by_sku.setdefault(p.sku, []).append(p)
    for sku, same in by_sku.items():  # "café" twice: NFC and NFD spellings of one name (a macOS copy)
        if len(same) > 1:
            names = ", ".join(repr(p.dir.name) for p in same)
            for p in same:
                error = InputError(
                    f"SKU {sku!r} is spelt by {len(same)} folders ({names}) that are the same name after Unicode "
                    "normalisation (NFC); rename or merge them", p.dir)
                logger.warning("skipping SKU %r: %s", p.dir.name, error, extra=SKU_FAILURE_LOG)
                failures.append((p.dir.name, p.dir, error))
            products = [p for p in products if p.sku != sku]
    failures.sort(key=lambda f: f[0])
    products.sort(key=lambda p: p.sku)
    return products, failures


EXPECTED_LAYOUT = """expected one folder per SKU, each holding that SKU's photos:
    PRODUCTS/
      SKU-123/
        front.jpg  back.jpg     (.jpg, .jpeg, .png or .webp)
        product.yaml            (optional)
      SKU-456/
        front.png"""
"""The products-folder layout, shown by errors about a folder that holds no SKU folders."""


def check_products_layout(root: Path) -> list[str]:
    """Refuse a products folder that holds no SKU folders; return warnings about loose files in it.

    An empty folder, a folder of loose photos, or one SKU's own folder (photos and ``product.yaml`` at the
    top, perhaps a ``masks/`` sub-folder) would otherwise render nothing and report ``0 ok`` with success.

    Args:
        root (`Path`): the products folder (``vitrine run PRODUCTS``).

    Returns:
        `list[str]`: warnings, e.g. loose photos next to SKU folders (they are not rendered).

    Raises:
        InputError: ``root`` is missing, not a folder, or holds no SKU folder; the message shows the
            expected layout.
    """
    root = Path(root)
    if not root.exists():
        raise InputError("products folder not found", root)
    if not root.is_dir():
        raise InputError("the products root is not a folder", root)
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        raise InputError(f"cannot list the folder: {e.strerror or e}", root) from e
    visible = [e for e in entries if not e.name.startswith((".", "_"))]
    folders = [e.name for e in visible if e.is_dir() or (e.is_symlink() and not os.path.exists(e.path))]
    photos = [e.name for e in visible if not e.is_dir()
              and e.name.lower().endswith(IMAGE_SUFFIXES + UNSUPPORTED_PHOTO_SUFFIXES)]
    specs = [e.name for e in visible if e.name in SPEC_FILENAMES]
    looks_like_sku = bool(specs) or (bool(photos) and set(folders) <= {"masks"})
    if looks_like_sku:
        shown = ", ".join((specs + photos)[:4]) + (", ..." if len(specs + photos) > 4 else "")
        raise InputError(
            f"this looks like one SKU's folder ({shown}), not a products folder of SKU folders; pass its "
            f"parent folder instead, or move the photos into a folder named after the SKU.\n{EXPECTED_LAYOUT}",
            root)
    if not folders:
        what = "is empty" if not visible else "holds no SKU folders (only " + ", ".join(
            e.name for e in visible[:4]) + (", ..." if len(visible) > 4 else "") + ")"
        raise InputError(f"the products folder {what}.\n{EXPECTED_LAYOUT}", root)
    warnings = []
    if photos:
        warnings.append(f"{root}: {len(photos)} loose photo(s) next to the SKU folders are not rendered (put each "
                        f"SKU's photos in its own folder): {', '.join(photos[:5])}" + (" ..." if len(photos) > 5
                                                                                          else ""))
    return warnings


SNAPSHOT_DIR = ".source"
"""Name of the folder inside a SKU's staging folder that holds the copy of its product folder being rendered."""


def snapshot_product(product: Product, dest: Path) -> Product:
    """Copy a product folder's files to ``dest/<folder name>/`` and load the product from that copy.

    A render reads the copy only, so a product edited while its SKU renders is rendered -- and its content
    hash recorded -- as it was when copied: the recorded hash is always the hash of what was rendered,
    and an edit made during the render is seen by the next run. Copies exactly the files `product_content_hash` covers (links followed).

    Args:
        product (`Product`): the product as loaded from the products folder.
        dest (`Path`): an empty or missing folder (inside the SKU's staging folder).

    Returns:
        `Product`: the same SKU, its ``dir``, ``images`` and ``spec_path`` inside ``dest``, its spec read from
        the copied ``product.yaml``.

    Raises:
        InputError: a file cannot be read, or the copied folder is no longer a valid product (for example
            ``product.yaml`` was broken by the edit).
    """
    import shutil

    copy = Path(dest) / product.dir.name
    copy.mkdir(parents=True, exist_ok=True)
    for rel, path in _product_files(product.dir):
        target = copy / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(path, target)
        except FileNotFoundError:  # deleted since it was listed: the copy is what gets rendered
            continue
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT) or (e.filename and str(e.filename) == str(target)):
                raise  # the catalog's disk, not the product, is at fault
            raise InputError(f"cannot read the file: {e.strerror or e}", path) from e
    snap = load_product(copy, root=copy.parent)
    snap.warnings = list(product.warnings)
    return snap


# --------------------------------------------------------------------------------------------------
# Content hash
# --------------------------------------------------------------------------------------------------


def _canonical_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return obj.as_posix()
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return item()
    tolist = getattr(obj, "tolist", None)  # numpy arrays
    if callable(tolist):
        return tolist()
    raise TypeError(f"cannot hash a parameter of type {type(obj).__name__}; pass JSON-like values")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_canonical_default
    )


def _product_files(folder: Path) -> list[tuple[str, Path]]:
    """Every non-hidden regular file under ``folder`` as ``(posix relative name, path)``.

    Links are followed, each real folder visited once (so a link loop cannot hang the walk).
    """
    files: list[tuple[str, Path]] = []
    seen: set[str] = set()
    for current, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(current) / name
            if not path.is_file():  # named pipes, sockets, devices: reading them could block forever
                continue
            files.append((path.relative_to(folder).as_posix(), path))
    files.sort()
    return files


def product_content_hash(product: Product, params: dict) -> str:
    """A cache key for a product: equal when its inputs and parameters are equal.

    Hashes the SKU, the relative name and sha256 of every non-hidden file in the product folder
    (images, ``product.yaml``, ``masks/``, anything else), and the canonical JSON of ``params``
    (sorted keys, so dict order does not matter). Hidden files such as ``.DS_Store`` are ignored.

    Args:
        product (`Product`): the product.
        params (`dict`): every parameter that affects the outputs (engine, model ids, steps...).
            Values must be JSON-like; `Path`, sets, pydantic models and numpy values are accepted.

    Returns:
        `str`: hex sha256.
    """
    lines = [f"vitrine-product-v1\nsku\0{product.sku}\n"]
    for rel, path in _product_files(product.dir):
        lines.append(f"file\0{rel}\0{sha256_file(path)}\n")
    lines.append(f"params\0{canonical_json(params)}\n")
    return sha256_bytes("".join(lines).encode("utf-8"))
