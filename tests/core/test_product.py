"""Tests for pipelines.product: product.yaml schema, SKU names, discovery, content hashes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.errors import InputError
from pipelines.imageio import save_image, save_mask
from pipelines.product import (
    Product,
    ProductSpec,
    discover_products,
    load_product,
    load_product_spec,
    product_content_hash,
    validate_sku,
)


def _image(path: Path, color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(path, np.full((4, 6, 3), color, dtype=np.uint8))
    return path


def _spec(folder: Path, text: str, name: str = "product.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _product(root: Path, sku: str = "SKU-1", yaml_text: str | None = None) -> Path:
    folder = root / sku
    _image(folder / "front.jpg")
    if yaml_text is not None:
        _spec(folder, yaml_text)
    return folder


# --------------------------------------------------------------------------------------------------
# product.yaml
# --------------------------------------------------------------------------------------------------


def test_defaults():
    spec = ProductSpec()
    assert spec.backgrounds == ["white", "studio", "texture"]
    assert spec.seeds == [0] and spec.marketplaces == [] and spec.masks == {}
    assert spec.commercial is False and spec.main_image is None and spec.garment_type is None
    assert (
        spec.thresholds.box_threshold,
        spec.thresholds.text_threshold,
        spec.thresholds.mask_threshold,
    ) == (
        0.35,
        0.25,
        0.5,
    )
    assert spec.prompts.garment is None


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_gives_defaults(tmp_path, text):
    assert load_product_spec(_spec(tmp_path, text)) == ProductSpec()


def test_full_spec(tmp_path):
    path = _spec(
        tmp_path,
        """
title: Wool cardigan
category: tops
garment_type: upper
prompts:
  garment: red wool cardigan
  person: woman in her 30s
  scene: bright studio
  negative: blurry
backgrounds: [white, studio]
marketplaces: [amazon, zalando]
seeds: [0, 7, 42]
thresholds:
  box_threshold: 0.4
  text_threshold: 0.3
  mask_threshold: 1
masks:
  garment: masks/garment.png
commercial: true
main_image: front.jpg
""",
    )
    spec = load_product_spec(path)
    assert spec.garment_type == "upper" and spec.prompts.person == "woman in her 30s"
    assert spec.seeds == [0, 7, 42] and spec.thresholds.mask_threshold == 1.0
    assert spec.masks == {"garment": "masks/garment.png"} and spec.commercial is True


def test_unknown_nested_key_names_file_and_key(tmp_path):
    path = _spec(tmp_path, "thresholds:\n  box_thresold: 0.3\n")
    with pytest.raises(InputError) as e:
        load_product_spec(path)
    assert e.value.key == "thresholds.box_thresold"
    assert e.value.path == str(path)
    message = str(e.value)
    assert str(path) in message and "[thresholds.box_thresold]" in message
    assert "unknown key" in message and "box_threshold" in message


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(InputError) as e:
        load_product_spec(_spec(tmp_path, "colour: red\n"))
    assert e.value.key == "colour" and "unknown key" in str(e.value)


@pytest.mark.parametrize(
    "text,key,words",
    [
        ("seeds: abc\n", "seeds", "list"),
        ("seeds: [1, -2]\n", "seeds.1", "greater than or equal to 0"),
        ("seeds: [1.5]\n", "seeds.0", "integer"),
        ("seeds: []\n", "seeds", "at least 1"),
        ("seeds: [3, 3]\n", "seeds", "more than once"),
        ("thresholds:\n  box_threshold: 2\n", "thresholds.box_threshold", "less than or equal to 1"),
        ("thresholds:\n  text_threshold: -0.1\n", "thresholds.text_threshold", "greater than or equal to 0"),
        ("thresholds:\n  mask_threshold: high\n", "thresholds.mask_threshold", "number"),
        ("thresholds: 0.5\n", "thresholds", "dictionary"),
        ("backgrounds: [white, neon]\n", "backgrounds.1", "'white', 'studio' or 'texture'"),
        ("garment_type: hat\n", "garment_type", "'upper'"),
        ("commercial: maybe\n", "commercial", "boolean"),
        ("title: 42\n", "title", "string"),
        ("prompts:\n  garment: [a, b]\n", "prompts.garment", "string"),
        ("prompts:\n  style: x\n", "prompts.style", "unknown key"),
        ("masks:\n  garment: ../other/mask.png\n", "masks.garment", "'..'"),
        ("masks:\n  garment: /etc/passwd\n", "masks.garment", "absolute"),
        ("masks:\n  garment: 'C:\\\\mask.png'\n", "masks.garment", "absolute"),
        ("main_image: ../x.jpg\n", "main_image", "'..'"),
    ],
)
def test_bad_values_name_key_and_reason(tmp_path, text, key, words):
    path = _spec(tmp_path, text)
    with pytest.raises(InputError) as e:
        load_product_spec(path)
    assert e.value.key == key, str(e.value)
    assert words in str(e.value)
    assert str(path) in str(e.value)


def test_several_errors_are_all_reported(tmp_path):
    with pytest.raises(InputError) as e:
        load_product_spec(_spec(tmp_path, "seeds: [-1]\ncolour: red\n"))
    message = str(e.value)
    assert "seeds.0" in message and "colour" in message and "1 more" in message


def test_invalid_yaml(tmp_path):
    with pytest.raises(InputError, match=r"not valid YAML at line \d+, column \d+"):
        load_product_spec(_spec(tmp_path, "title: a\nseeds: [1, 2\n"))


def test_top_level_must_be_mapping(tmp_path):
    with pytest.raises(InputError, match="mapping"):
        load_product_spec(_spec(tmp_path, "- a\n- b\n"))


def test_duplicate_keys_are_errors(tmp_path):
    with pytest.raises(InputError, match="duplicate key 'title'"):
        load_product_spec(_spec(tmp_path, "title: a\ntitle: b\n"))


def test_unsafe_yaml_tags_are_refused(tmp_path):
    with pytest.raises(InputError, match="not valid YAML"):
        load_product_spec(_spec(tmp_path, "title: !!python/object/apply:os.system ['true']\n"))


def test_non_utf8_file(tmp_path):
    path = tmp_path / "product.yaml"
    path.write_bytes(b"title: caf\xe9\n")
    with pytest.raises(InputError, match="UTF-8"):
        load_product_spec(path)


# --------------------------------------------------------------------------------------------------
# SKU names
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "..",
        "a/b",
        "a\\b",
        ".hidden",
        "_private",
        "",
        "a..b",
        "a\x00b",
        "a\tb",
        "a\nb",
        " lead",
        "trail ",
        "x" * 129,
        "a:b",
        "a*b",
        "a\u200bb",
    ],
)
def test_bad_sku_names(name):
    with pytest.raises(InputError):
        validate_sku(name)


@pytest.mark.parametrize("name", ["SKU-1", "A", "summer dress 2024", "Jäckchen_été.v2", "商品123", "x" * 128])
def test_good_sku_names(name):
    assert validate_sku(name) == name


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_validated_skus_are_safe_folder_names(name):
    try:
        validate_sku(name)
    except InputError:
        return
    assert name and "/" not in name and "\\" not in name and ".." not in name and "\x00" not in name
    assert not name.startswith((".", "_")) and Path(name).name == name


# --------------------------------------------------------------------------------------------------
# Product folders
# --------------------------------------------------------------------------------------------------


def test_load_product_lists_images(tmp_path):
    folder = tmp_path / "Jäckchen 2"
    for name in ("b.PNG", "a.jpg", "C.webp", "d.JpEg", ".hidden.jpg", "notes.txt", "e.gif"):
        if name.endswith(".txt"):
            (folder / name).write_text("x")
        else:
            _image(folder / name) if not name.endswith(".gif") else (folder / name).write_bytes(b"GIF89a")
    (folder / "sub").mkdir()
    _image(folder / "sub" / "x.jpg")
    product = load_product(folder)
    assert isinstance(product, Product)
    assert product.sku == "Jäckchen 2" and product.dir == folder
    assert [p.name for p in product.images] == ["a.jpg", "b.PNG", "C.webp", "d.JpEg"]
    assert product.spec == ProductSpec() and product.spec_path is None
    assert product.main_image == folder / "a.jpg"


def test_load_product_without_images(tmp_path):
    folder = tmp_path / "SKU"
    folder.mkdir()
    (folder / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="no product image") as e:
        load_product(folder)
    assert str(folder) in str(e.value)


def test_load_product_bad_sku(tmp_path):
    folder = tmp_path / "bad:name"
    _image(folder / "a.jpg")
    with pytest.raises(InputError) as e:
        load_product(folder)
    assert str(folder) in str(e.value)


def test_load_product_reads_yaml_and_yml(tmp_path):
    folder = _product(tmp_path, yaml_text="title: A\n")
    product = load_product(folder)
    assert product.spec.title == "A" and product.spec_path == folder / "product.yaml"
    (folder / "product.yaml").rename(folder / "product.yml")
    assert load_product(folder).spec_path == folder / "product.yml"
    _spec(folder, "title: B\n")
    with pytest.raises(InputError, match="both"):
        load_product(folder)


def test_load_product_bad_yaml_names_file(tmp_path):
    folder = _product(tmp_path, yaml_text="seeds: abc\n")
    with pytest.raises(InputError) as e:
        load_product(folder)
    assert e.value.path == str(folder / "product.yaml") and e.value.key == "seeds"


def test_mask_override_must_exist(tmp_path):
    folder = _product(tmp_path, yaml_text="masks:\n  garment: masks/garment.png\n")
    with pytest.raises(InputError, match="not found") as e:
        load_product(folder)
    assert e.value.key == "masks.garment"
    save_mask(folder / "masks" / "garment.png", np.zeros((4, 6), np.uint8))
    product = load_product(folder)
    assert product.mask_override("garment") == folder / "masks" / "garment.png"
    assert product.mask_override("body") is None


def test_main_image_must_be_one_of_the_images(tmp_path):
    folder = _product(tmp_path, yaml_text="main_image: side.jpg\n")
    with pytest.raises(InputError, match=r"side\.jpg") as e:
        load_product(folder)
    assert e.value.key == "main_image"
    _image(folder / "side.jpg")
    assert load_product(folder).main_image == folder / "side.jpg"


needs_symlinks = pytest.mark.skipif(
    not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks"
)


@needs_symlinks
def test_symlinked_image_outside_root_is_rejected(tmp_path):
    root = tmp_path / "products"
    folder = _product(root)
    outside = _image(tmp_path / "elsewhere" / "secret.jpg")
    (folder / "link.jpg").symlink_to(outside)
    with pytest.raises(InputError, match="outside") as e:
        load_product(folder, root=root)
    assert "link.jpg" in str(e.value)


@needs_symlinks
def test_symlinked_image_inside_root_is_accepted(tmp_path):
    root = tmp_path / "products"
    folder = _product(root)
    shared = _image(root / "_shared" / "size-chart.png")
    (folder / "size-chart.png").symlink_to(shared)
    assert [p.name for p in load_product(folder, root=root).images] == ["front.jpg", "size-chart.png"]


@needs_symlinks
def test_broken_symlink_is_rejected(tmp_path):
    folder = _product(tmp_path / "products")
    (folder / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    with pytest.raises(InputError, match="broken"):
        load_product(folder, root=tmp_path / "products")


@needs_symlinks
def test_symlinked_folder_outside_root_is_rejected(tmp_path):
    root = tmp_path / "products"
    root.mkdir()
    outside = _product(tmp_path / "elsewhere", sku="real")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    products, failures = discover_products(root)
    assert products == []
    ((sku, _, error),) = failures
    assert sku == "linked" and "outside" in str(error) and "linked" in str(error)


@needs_symlinks
def test_symlinked_mask_outside_root_is_rejected(tmp_path):
    root = tmp_path / "products"
    folder = _product(root, yaml_text="masks:\n  garment: masks/g.png\n")
    (folder / "masks").mkdir()
    secret = tmp_path / "secret.png"
    save_mask(secret, np.zeros((4, 6), np.uint8))
    (folder / "masks" / "g.png").symlink_to(secret)
    with pytest.raises(InputError, match="outside"):
        load_product(folder, root=root)


# --------------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------------


def test_discover_isolates_broken_skus(tmp_path):
    root = tmp_path / "products"
    _product(root, "B-2")
    _product(root, "A-1", yaml_text="title: ok\n")
    _product(root, "C-3", yaml_text="thresholds:\n  box_thresold: 0.3\n")
    (root / "D-4").mkdir()  # no images
    _product(root, "_drafts")
    _product(root, ".git")
    (root / "README.md").write_text("notes")
    products, failures = discover_products(root)
    assert [p.sku for p in products] == ["A-1", "B-2"]
    assert [(sku, path) for sku, path, _ in failures] == [("C-3", root / "C-3"), ("D-4", root / "D-4")]
    assert all(isinstance(e, InputError) for _, _, e in failures)
    assert failures[0][2].key == "thresholds.box_thresold"


@needs_symlinks
def test_discover_links_at_root(tmp_path):
    root = tmp_path / "products"
    _product(root, "A")
    (root / "notes.md").write_text("x")
    (root / "notes-link.md").symlink_to(root / "notes.md")
    (root / "gone").symlink_to(tmp_path / "missing", target_is_directory=True)
    products, failures = discover_products(root)
    assert [p.sku for p in products] == ["A"]
    assert [(sku, "broken" in str(e)) for sku, _, e in failures] == [("gone", True)]


def test_discover_bad_root(tmp_path):
    with pytest.raises(InputError, match="not found"):
        discover_products(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        discover_products(tmp_path / "file")


def test_discover_empty_root(tmp_path):
    assert discover_products(tmp_path) == ([], [])


# --------------------------------------------------------------------------------------------------
# Content hash
# --------------------------------------------------------------------------------------------------


def test_content_hash_is_stable_and_sensitive(tmp_path):
    folder = _product(tmp_path, yaml_text="title: A\n")
    params = {"engine": "classic", "steps": 4, "seeds": [0, 1], "out": Path("catalog")}
    h1 = product_content_hash(load_product(folder), params)
    assert len(h1) == 64 and int(h1, 16) >= 0
    # Same inputs, fresh objects, different dict order: same hash.
    assert product_content_hash(load_product(folder), dict(reversed(list(params.items())))) == h1
    # Hidden files do not count.
    (folder / ".DS_Store").write_bytes(b"junk")
    assert product_content_hash(load_product(folder), params) == h1
    # A parameter changes.
    assert product_content_hash(load_product(folder), {**params, "steps": 5}) != h1
    # One byte of an image changes.
    data = bytearray((folder / "front.jpg").read_bytes())
    data[-3] ^= 1
    (folder / "front.jpg").write_bytes(bytes(data))
    h2 = product_content_hash(load_product(folder), params)
    assert h2 != h1
    # product.yaml changes.
    _spec(folder, "title: B\n")
    h3 = product_content_hash(load_product(folder), params)
    assert h3 not in (h1, h2)
    # A mask override is added.
    save_mask(folder / "masks" / "garment.png", np.zeros((4, 6), np.uint8))
    h4 = product_content_hash(load_product(folder), params)
    assert h4 not in (h1, h2, h3)
    # A file is renamed.
    (folder / "masks" / "garment.png").rename(folder / "masks" / "body.png")
    assert product_content_hash(load_product(folder), params) not in (h1, h2, h3, h4)


def test_content_hash_differs_between_skus_with_same_files(tmp_path):
    a = load_product(_product(tmp_path, "A"))
    b = load_product(_product(tmp_path, "B"))
    assert product_content_hash(a, {}) != product_content_hash(b, {})


def test_content_hash_rejects_unhashable_params(tmp_path):
    product = load_product(_product(tmp_path))
    with pytest.raises(TypeError, match="object"):
        product_content_hash(product, {"model": object()})
