"""Reliability, bad inputs: a corpus of broken and awkward product folders, run through a batch.

The corpus is generated here (no third-party files): zero-byte, truncated and mislabelled images, CMYK,
16-bit, palette-with-transparency, EXIF-rotated, 1x1, 50-megapixel and 400-megapixel (bomb) photos,
animated GIF/WebP, bad ``product.yaml`` files, awkward SKU folder names and symbolic links leaving the
products root. It is mixed with good SKUs and run as a batch: every good SKU must complete, each bad one
must fail alone with an error naming the file (and the key), and the exit code must say so.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.catalog.render import process_sku
from pipelines.catalog.verify import verify_entry
from pipelines.engines.registry import get_engine
from pipelines.catalog.manifest import read_manifest
from pipelines.product import discover_products
from pipelines.catalog.report import build_report
from pipelines.samples import draw_tee
from tests.helpers.reliability import REPO, check_catalog, record_figures, render_options
from tests.helpers.images import png_chunk, png_rgb16

GOOD_SPEC = "backgrounds: [white]\n"


# --------------------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One SKU of the corpus and what the batch must do with it.

    Attributes:
        sku (`str`): folder name.
        what (`str`): the input being tried, in words.
        ok (`bool`): a correct result is expected (else a clear failure).
        mentions (`list[str]`): words the failure's error must contain (the file, the key).
    """

    sku: str
    what: str
    ok: bool
    mentions: list[str] = field(default_factory=list)






def png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels, with a few bytes of data after it."""
    rows = zlib.compress(b"\0" * 4096)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )


def _encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _sku(root: Path, name: str, files: dict[str, bytes | str], spec: str | None = GOOD_SPEC) -> Path:
    d = root / name
    d.mkdir(parents=True)
    for rel, data in files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    if spec is not None:
        (d / "product.yaml").write_text(spec, encoding="utf-8")
    return d


def big_photo(megapixels: float, tee: np.ndarray) -> Image.Image:
    """A ``megapixels`` 3:2 studio photo (near-white, the tee in the middle), cheap to encode."""
    h = int((megapixels * 1e6 / 1.5) ** 0.5)
    w = int(h * 1.5)
    im = Image.new("RGB", (w, h), (248, 248, 248))
    side = int(h * 0.8)
    product = Image.fromarray(tee).resize((side, side), Image.Resampling.BILINEAR)
    im.paste(product, ((w - side) // 2, (h - side) // 2))
    return im


def build_corpus(root: Path, *, size: int = 256, with_50mp: bool = True) -> list[Case]:
    """Write the bad-input corpus and good SKUs under ``root`` (the products root); return the cases.

    ``root`` must not exist yet; a sibling ``root.parent / "outside"`` receives the targets of the
    symbolic links that leave the products root.
    """
    root.mkdir(parents=True)
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    tee, _ = draw_tee(size)
    tee_im = Image.fromarray(tee)
    png = _encode(tee_im, "PNG")
    jpg = _encode(tee_im, "JPEG", quality=90)
    cases: list[Case] = []

    def add(name: str, what: str, ok: bool, files: dict, spec: str | None = GOOD_SPEC, mentions=()) -> Path:
        cases.append(Case(name, what, ok, list(mentions)))
        return _sku(root, name, files, spec)

    # Good SKUs.
    for i in range(3):
        photo = _encode(Image.fromarray(draw_tee(size, seed=i)[0]), "PNG")
        add(f"good-{i}", "a plain good product", True, {"front.png": photo})
    add("good-jpeg-and-alt", "a JPEG main photo plus an alternate", True,
        {"a-front.jpg": jpg, "b-back.png": png})

    # Images.
    add("zero-byte", "zero-byte .jpg", False, {"front.jpg": b""}, mentions=["front.jpg", "empty"])
    add("truncated-jpeg", "truncated JPEG", False, {"front.jpg": jpg[: len(jpg) // 2]},
        mentions=["front.jpg"])
    add("truncated-png", "truncated PNG", False, {"front.png": png[: len(png) // 2]}, mentions=["front.png"])
    add("text-as-jpg", "a text file named .jpg", False, {"front.jpg": "not a photo\n"},
        mentions=["front.jpg", "not an image"])
    add("cmyk-jpeg", "CMYK JPEG", True, {"front.jpg": _encode(tee_im.convert("CMYK"), "JPEG", quality=95)})
    add("png-16bit", "16-bit RGB PNG", True, {"front.png": png_rgb16(tee.astype(np.uint16) * 257)})
    pal = tee_im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    pal_idx = np.asarray(pal)
    corner = int(pal_idx[0, 0])  # the backdrop's colour becomes transparent
    trns = bytes(0 if i == corner else 255 for i in range(64))
    add("palette-transparent", "palette PNG with transparency", True,
        {"front.png": _encode(pal, "PNG", transparency=trns)})
    rotated = tee_im.transpose(Image.Transpose.ROTATE_90)  # stored sideways...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...and tagged "rotate 90 CW to display"
    add("exif-rotated", "EXIF-rotated photo (orientation 6)", True,
        {"front.jpg": _encode(rotated, "JPEG", quality=90, exif=exif.tobytes())})
    dot = _encode(Image.new("RGB", (1, 1), (250, 250, 250)), "PNG")
    add("one-pixel", "1x1 image", False, {"front.png": dot}, mentions=["front.png"])
    if with_50mp:
        add("photo-50mp", "50-megapixel photo (downscaled to 4096)", True,
            {"front.jpg": _encode(big_photo(50, tee), "JPEG", quality=80)})
    add("bomb-400mp", "400-megapixel decompression bomb", False, {"front.png": png_bomb(20_000, 20_000)},
        mentions=["front.png", "400,000,000", "before decoding"])
    frames = [tee_im, tee_im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    add("animated-webp", "animated WebP (first frame used)", True,
        {"front.webp": _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)})
    add("animated-gif-only", "animated GIF (not a product image suffix)", False,
        {"front.gif": _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])},
        mentions=["animated-gif-only", "no product image"])
    add("same-stem", "front.jpg and front.png in one folder", True, {"front.jpg": jpg, "front.png": png})
    add("backslash-name", "an image file name holding a backslash", False,
        {"front.png": png, "a\\b.png": png}, mentions=["a\\b.png", "contains"])
    add("upper-case-suffix", "an image named FRONT.JPEG", True, {"FRONT.JPEG": jpg})

    # product.yaml.
    add("yaml-wrong-type", "product.yaml with a wrong type", False, {"front.png": png},
        spec="backgrounds: white\nseeds: [one]\n", mentions=["product.yaml", "backgrounds"])
    add("yaml-nested-type", "product.yaml with a wrong nested type", False, {"front.png": png},
        spec="thresholds:\n  box_threshold: high\n", mentions=["product.yaml", "thresholds.box_threshold"])
    add("yaml-unknown-key", "product.yaml with an unknown key", False, {"front.png": png},
        spec="backgrounds: [white]\ncolour: red\n", mentions=["product.yaml", "colour"])
    add("yaml-invalid", "product.yaml that is not YAML", False, {"front.png": png},
        spec="backgrounds: [white\n", mentions=["product.yaml", "YAML"])
    add("yaml-python-tag", "product.yaml with a Python object tag", False, {"front.png": png},
        spec="title: !!python/object/apply:os.system ['true']\n", mentions=["product.yaml"])
    add("yaml-deep", "product.yaml nested 100,000 levels deep", False, {"front.png": png},
        spec="title: " + "[" * 100_000 + "]" * 100_000 + "\n", mentions=["product.yaml"])
    levels = ["&a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    add("yaml-billion-laughs", "product.yaml alias bomb (10^9 elements)", False, {"front.png": png},
        spec="title: [" + ", ".join(levels) + "]\n", mentions=["product.yaml", "title"])
    add("yaml-main-missing", "product.yaml naming a main image that does not exist", False,
        {"front.png": png},
        spec="backgrounds: [white]\nmain_image: back.png\n", mentions=["product.yaml", "main_image"])
    add("yaml-mask-traversal", "product.yaml mask override with '..'", False, {"front.png": png},
        spec="backgrounds: [white]\nmasks: {garment: ../good-0/front.png}\n",
        mentions=["product.yaml", "masks"])
    add("yaml-mask-absolute", "product.yaml mask override with an absolute path", False, {"front.png": png},
        spec="backgrounds: [white]\nmasks: {garment: /etc/passwd}\n", mentions=["product.yaml", "masks"])
    add("mask-wrong-size", "mask override of the wrong size", False,
        {"front.png": png, "masks/product.png": _encode(Image.new("L", (10, 10), 255), "PNG")},
        mentions=["product.png", "10x10"])
    add("mask-not-image", "mask override that is not an image", False,
        {"front.png": png, "masks/product.png": "not a mask\n"}, mentions=["product.png"])

    # SKU folder names.
    add("tee shirt blue", "SKU name with spaces", True, {"front.png": png})
    add("Tröja-ß-日本", "SKU name with non-ASCII letters", True, {"front.png": png})
    add("a..b", "SKU name with '..'", False, {"front.png": png}, mentions=["a..b", ".."])
    add("tab\tname", "SKU name with a control character", False, {"front.png": png}, mentions=["control"])

    # Symbolic links leaving the products root.
    if hasattr(os, "symlink") and os.name != "nt":
        (outside / "secret.png").write_bytes(png)
        (outside / "product.yaml").write_text(GOOD_SPEC)
        (outside / "sku").mkdir()
        (outside / "sku" / "front.png").write_bytes(png)
        (outside / "masks").mkdir()
        (outside / "masks" / "product.png").write_bytes(_encode(Image.new("L", (size, size), 255), "PNG"))
        cases.append(Case("link-folder", "SKU folder linked outside the root", False,
                          ["link-folder", "outside"]))
        (root / "link-folder").symlink_to(outside / "sku", target_is_directory=True)
        d = add("link-image", "image linked outside the root", False, {}, mentions=["front.png", "outside"])
        (d / "front.png").symlink_to(outside / "secret.png")
        d = add("link-yaml", "product.yaml linked outside the root", False, {"front.png": png}, spec=None,
                mentions=["product.yaml", "outside"])
        (d / "product.yaml").symlink_to(outside / "product.yaml")
        d = add("link-mask", "masks/product.png linked outside the root", False, {"front.png": png},
                mentions=["product.png", "outside"])
        (d / "masks").mkdir()
        (d / "masks" / "product.png").symlink_to(outside / "masks" / "product.png")
        d = add("link-masks-dir", "masks/ folder linked outside the root", False, {"front.png": png},
                mentions=["masks", "outside"])
        (d / "masks").symlink_to(outside / "masks", target_is_directory=True)
        d = add("link-extra-file", "a stray file linked to /dev/zero", False, {"front.png": png},
                mentions=["notes.txt", "outside"])
        (d / "notes.txt").symlink_to("/dev/zero")
    if hasattr(os, "mkfifo"):
        d = add("fifo-extra", "a named pipe in the product folder (must not hang)", True, {"front.png": png})
        os.mkfifo(d / "notes.txt")
    return cases


# --------------------------------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------------------------------


def run_batch(products: Path, catalog: Path) -> dict:
    """What the batch flow does, without Prefect: discover, render each valid SKU alone, report."""
    engine = get_engine("classic")
    started = datetime.now(UTC)
    goods, failures = discover_products(products)
    entries = [{"sku": sku, "status": "failed", "error": str(err), "outputs": [], "reason": None}
               for sku, _, err in failures]
    for product in goods:
        entries.append(process_sku(product, catalog, engine, render_options()).to_json())
    return build_report(entries, products_dir=products, catalog_dir=catalog, engine=engine.describe(),
                        started_at=started)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("inputs")
    products, catalog = base / "products", base / "catalog"
    cases = build_corpus(products)
    start = time.perf_counter()
    report = run_batch(products, catalog)
    return cases, report, products, catalog, time.perf_counter() - start


def _judge(case: Case, entry: dict | None) -> str | None:
    """What is wrong with a case's outcome, or None."""
    if entry is None:
        return "missing from the report"
    if case.ok:
        if entry["status"] != "ok":
            return f"expected a result, got {entry['status']}: {entry['error']}"
        return None
    if entry["status"] != "failed":
        return f"expected a clear failure, got {entry['status']}"
    missing = [m for m in case.mentions if m not in (entry["error"] or "")]
    return f"error {entry['error']!r} does not mention {missing}" if missing else None


def test_each_input_gives_a_correct_result_or_a_clear_error(corpus):
    cases, report, _, _, seconds = corpus
    by_sku = {e["sku"]: e for e in report["entries"]}
    problems = {c.sku: p for c in cases if (p := _judge(c, by_sku.get(c.sku)))}
    assert not problems, "\n".join(f"{sku}: {p}" for sku, p in problems.items())
    assert len(by_sku) == len(cases)
    record_figures("inputs", {
        "inputs_tried": len(cases),
        "correct_results": sum(c.ok for c in cases),
        "clear_errors": sum(not c.ok for c in cases),
        "unclear_or_wrong": len(problems),
        "good_skus_completed": sum(by_sku[c.sku]["status"] == "ok" for c in cases if c.ok),
        "batch_seconds": round(seconds, 1),
        "cases": [{"sku": c.sku, "input": c.what, "expected": "result" if c.ok else "clear error",
                   "error": by_sku[c.sku]["error"]} for c in cases],
    })


def test_the_report_counts_every_failure_and_every_good_sku_is_complete(corpus):
    cases, report, _, catalog, _ = corpus
    good = sorted(c.sku for c in cases if c.ok)
    bad = sorted(c.sku for c in cases if not c.ok)
    assert report["counts"] == {"ok": len(good), "failed": len(bad), "skipped": 0}
    assert sorted(e["sku"] for e in report["entries"] if e["status"] == "failed") == bad
    for e in report["entries"]:
        if e["status"] == "failed":
            assert e["error"] and not e["outputs"]
    complete, problems = check_catalog(catalog, [c.sku for c in cases])
    assert not problems and sorted(complete) == good  # no entry, not even a partial one, for a bad SKU
    assert not any((catalog / ".staging").iterdir())
    for sku in good:
        assert all(v["identical_fraction"] == 1.0 for v in verify_entry(catalog / sku)), sku


def test_awkward_inputs_are_normalised_correctly(corpus):
    _, _, products, catalog, _ = corpus

    def inputs(sku):
        manifest = read_manifest(catalog / sku / "manifest.json")
        return {i["file"]: i for i in manifest["inputs"] if "normalized" in i}

    def normalised(sku, name):
        with Image.open(catalog / sku / inputs(sku)[name]["normalized"]) as im:
            return np.asarray(im.convert("RGB")).astype(int)

    tee = draw_tee(256)[0].astype(int)
    big = inputs("photo-50mp")["front.jpg"]
    assert big["source_size"][0] * big["source_size"][1] >= 49_000_000 and max(big["size"]) == 4096
    assert abs(big["scale"] - 4096 / max(big["source_size"])) < 1e-9
    rot = inputs("exif-rotated")["front.jpg"]
    assert rot["exif_rotated"] and np.abs(normalised("exif-rotated", "front.jpg") - tee).mean() < 4  # upright
    assert inputs("cmyk-jpeg")["front.jpg"]["source_mode"] == "CMYK"
    assert np.abs(normalised("cmyk-jpeg", "front.jpg") - tee).mean() < 8
    assert inputs("png-16bit")["front.png"]["source_mode"] == "RGB"  # Pillow reads 16-bit RGB as 8-bit
    assert np.array_equal(normalised("png-16bit", "front.png"), tee)  # v * 257 -> v exactly
    assert inputs("palette-transparent")["front.png"]["has_alpha"]
    subjects = read_manifest(catalog / "palette-transparent" / "manifest.json")["subjects"]
    assert subjects[0]["source"].startswith("input-alpha")
    assert np.array_equal(normalised("animated-webp", "front.webp"), tee)  # the first frame, losslessly
    same = inputs("same-stem")
    assert same["front.jpg"]["normalized"] != same["front.png"]["normalized"]
    assert np.array_equal(normalised("same-stem", "front.png"), tee)


def test_bad_inputs_fail_fast(corpus):
    """Bombs are refused from their headers; no bad input costs more than a moment."""
    _, report, _, _, _ = corpus
    by_sku = {e["sku"]: e for e in report["entries"]}
    assert by_sku["bomb-400mp"]["seconds"] < 1.0
    start = time.perf_counter()
    discover_products(corpus[2])  # every YAML bomb, deep nesting and link check again
    assert time.perf_counter() - start < 10.0


def test_a_rerun_skips_every_good_sku_and_reports_the_same_failures(corpus):
    cases, report, products, catalog, _ = corpus
    again = run_batch(products, catalog)
    good = sum(c.ok for c in cases)
    assert again["counts"] == {"ok": 0, "failed": len(cases) - good, "skipped": good}
    assert all(e["reason"] == "unchanged" for e in again["entries"] if e["status"] == "skipped")
    assert [e["error"] for e in again["entries"] if e["status"] == "failed"] == \
        [e["error"] for e in report["entries"] if e["status"] == "failed"]


def test_the_flow_task_reports_a_bad_sku_as_a_failed_entry(corpus, tmp_path):
    from flows.catalog_batch import render_sku

    _, _, products, _, _ = corpus
    for sku, word in (("bomb-400mp", "front.png"), ("truncated-jpeg", "front.jpg"),
                      ("yaml-deep", "product.yaml"), ("link-mask", "outside")):
        entry = render_sku.fn(str(products), sku, str(tmp_path / "c"), engine="classic")
        assert entry["status"] == "failed" and word in entry["error"], entry


@pytest.mark.slow
def test_vitrine_run_over_the_mixed_folder(tmp_path):
    """End to end through the CLI and the Prefect flow: exit code 1, every failure listed, goods complete."""
    products, catalog = tmp_path / "products", tmp_path / "catalog"
    cases = build_corpus(products, size=512)  # the CLI's 2000 px main: photos within the 6x upscale limit
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "GLOG_minloglevel": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", str(products), "--catalog", str(catalog), "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=400,
    )
    good = sorted(c.sku for c in cases if c.ok)
    bad = sorted(c.sku for c in cases if not c.ok)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"{len(good)} ok, {len(bad)} failed, 0 skipped" in proc.stdout
    failed_lines = [line.removeprefix("failed: ") for line in proc.stderr.splitlines()
                    if line.startswith("failed: ")]
    shown = sorted(s.replace("\t", "\\t") for s in bad)  # control characters escaped
    # one `failed: SKU: error` line per failed SKU: each line names exactly one of them, first
    named = sorted(max((n for n in shown if line == n or line.startswith(n + ": ")), key=len, default=line)
                   for line in failed_lines)
    assert named == shown, failed_lines
    report_path = Path(proc.stdout.split("report: ")[-1].strip())
    report = json.loads(report_path.read_text(encoding="utf-8"))
    by_sku = {e["sku"]: e for e in report["entries"]}
    problems = {c.sku: p for c in cases if (p := _judge(c, by_sku.get(c.sku)))}
    assert not problems, problems
    complete, integrity = check_catalog(catalog, [c.sku for c in cases])
    assert not integrity and sorted(complete) == good
    record_figures("inputs_cli", {"inputs_tried": len(cases), "exit_code": proc.returncode,
                                  "good_skus_completed": len(complete), "failures_listed": len(failed_lines)})
