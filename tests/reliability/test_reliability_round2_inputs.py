"""Issue 14, round 2 -- inputs and CLI: findings 5, 8, 9, 11, 12, the seed/output limits of 13, and 14.

Each test reproduces its finding on the code before the fix (see docs/reliability.md, "Round 2 -- inputs
and CLI") and checks the fix at the depth it was made.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from pipelines.catalog.options import RenderOptions
from pipelines.catalog.render import process_sku, sku_content_hash
from pipelines.engines.registry import get_engine
from pipelines.errors import InputError
from pipelines.imageio import load_image, save_image, sha256_file
from pipelines.catalog.manifest import read_manifest
from pipelines.product import (
    IMAGE_STEM_MAX_BYTES,
    OUTPUTS_MAX,
    SEEDS_MAX,
    SKU_MAX_BYTES,
    discover_products,
    load_product,
    load_product_spec,
    validate_sku,
)
from pipelines.samples import draw_tee, draw_tote

REPO = Path(__file__).resolve().parents[2]
FAST = RenderOptions(canvas=256, lifestyle_size=(200, 240))


def _sku(root: Path, name: str, yaml: str | None = "backgrounds: [white]\n", photo: str = "front.png",
         size: int = 512) -> Path:
    d = root / name
    d.mkdir(parents=True)
    save_image(d / photo, draw_tee(size)[0])
    if yaml is not None:
        (d / "product.yaml").write_text(yaml)
    return d


def _main(argv, monkeypatch, capsys):
    """`vitrine ARGV` in this process (local path: no Prefect API), returning (exit code, stdout, stderr)."""
    from flows.cli import main

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / "no-such-prefect-home"))
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------------------------------
# Finding 5: a product edited between load and render
# --------------------------------------------------------------------------------------------------


class _EditsWhileRendering:
    """The classic engine, but the first segmentation rewrites the product folder (a user saving an edit)."""

    def __init__(self, folder: Path):
        self._engine = get_engine("classic")
        self._folder = folder
        self.edited = False

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def find_subject(self, img, product):
        if not self.edited:
            self.edited = True
            (self._folder / "product.yaml").write_text("backgrounds: [white, studio]\n")
            save_image(self._folder / "front.png", draw_tote(512)[0])
        return self._engine.find_subject(img, product)


def test_product_edited_while_rendering_is_recorded_as_rendered_and_redone_next_run(tmp_path):
    root = tmp_path / "products"
    d = _sku(root, "tee")
    before_png, before_yaml = sha256_file(d / "front.png"), sha256_file(d / "product.yaml")
    engine = _EditsWhileRendering(d)
    r = process_sku(load_product(d, root=root), tmp_path / "c", engine, FAST)
    assert r.status == "ok" and engine.edited
    m = read_manifest(tmp_path / "c" / "tee" / "manifest.json")
    recorded = {i["file"]: i["sha256"] for i in m["inputs"]}
    # The manifest describes what was rendered: the files as they were when the render started ...
    assert recorded == {"front.png": before_png, "product.yaml": before_yaml}
    assert [o["file"] for o in m["outputs"]] == ["main.png", "main.jpg"]
    # ... and its content hash is the hash of those files, not of the edited folder (the bug: "new hash, old
    # render, skipped forever").
    assert m["content_hash"] != sku_content_hash(load_product(d, root=root), engine, FAST)
    again = process_sku(load_product(d, root=root), tmp_path / "c", get_engine("classic"), FAST)
    assert again.status == "ok"  # the edit is rendered by the next run, not skipped
    m2 = read_manifest(tmp_path / "c" / "tee" / "manifest.json")
    assert "lifestyle-studio-s0.png" in [o["file"] for o in m2["outputs"]]
    assert process_sku(load_product(d, root=root), tmp_path / "c", get_engine("classic"), FAST).status == "skipped"
    assert not list((tmp_path / "c" / ".staging").iterdir())  # the render's copy went with its staging folder


def test_spec_loaded_before_an_edit_is_not_what_gets_rendered(tmp_path):
    root = tmp_path / "products"
    d = _sku(root, "tee")
    stale = load_product(d, root=root)  # spec: backgrounds [white]
    (d / "product.yaml").write_text("backgrounds: [white, studio]\n")
    r = process_sku(stale, tmp_path / "c", get_engine("classic"), FAST)
    assert r.status == "ok"
    m = read_manifest(tmp_path / "c" / "tee" / "manifest.json")
    assert "lifestyle-studio-s0.png" in [o["file"] for o in m["outputs"]]
    assert {i["file"]: i["sha256"] for i in m["inputs"]}["product.yaml"] == sha256_file(d / "product.yaml")


def test_errors_of_a_snapshot_render_name_the_users_file(tmp_path):
    root = tmp_path / "products"
    d = _sku(root, "tee")
    product = load_product(d, root=root)
    (d / "front.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # broken after discovery
    r = process_sku(product, tmp_path / "c", get_engine("classic"), FAST)
    assert r.status == "failed"
    assert str(d / "front.png") in r.error and ".staging" not in r.error


# --------------------------------------------------------------------------------------------------
# Finding 9: ICC profiles judged by their contents
# --------------------------------------------------------------------------------------------------


def _s15f16(x: float) -> bytes:
    return struct.pack(">i", int(round(x * 65536)))


def _xyz_tag(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + b"\0" * 4 + _s15f16(x) + _s15f16(y) + _s15f16(z)


def _curve_tag(gamma: float) -> bytes:
    return b"curv" + b"\0" * 4 + struct.pack(">I", 1) + struct.pack(">H", int(round(gamma * 256))) + b"\0\0"


def _desc_tag(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    body = b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_text)) + ascii_text
    body += struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + b"\0" * 67
    return body + b"\0" * (-len(body) % 4)


def icc_profile(name: str, primaries: tuple, gamma: float, curve: bytes | None = None) -> bytes:
    """A v2 RGB matrix/TRC display profile: D50-adapted colorant XYZs ``primaries`` (r, g, b) and one gamma."""
    tags = [(b"desc", _desc_tag(name)), (b"wtpt", _xyz_tag(0.9642, 1.0, 0.8249)),
            (b"rXYZ", _xyz_tag(*primaries[0])), (b"gXYZ", _xyz_tag(*primaries[1])), (b"bXYZ", _xyz_tag(*primaries[2])),
            (b"rTRC", curve or _curve_tag(gamma)), (b"gTRC", curve or _curve_tag(gamma)),
            (b"bTRC", curve or _curve_tag(gamma)),
            (b"cprt", b"text" + b"\0" * 4 + b"none\0\0\0\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + b"\0" * 12 + b"acsp"
              + b"APPL" + b"\0" * 4 + b"\0" * 8 + b"\0" * 8 + struct.pack(">I", 0)
              + _s15f16(0.9642) + _s15f16(1.0) + _s15f16(0.8249) + b"\0" * 4 + b"\0" * 16 + b"\0" * 28)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


SRGB_D50 = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))
P3_D50 = ((0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419), (0.1571, 0.0666, 0.7841))


def _photo_with_profile(path: Path, icc: bytes) -> np.ndarray:
    rng = np.random.default_rng(0)
    rgb = rng.integers(20, 236, size=(32, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, format="PNG", icc_profile=icc)
    return rgb


@pytest.mark.parametrize("name, primaries, gamma", [
    ("sRGB-linear", SRGB_D50, 1.0),                       # linear light, named sRGB
    ("sRGB IEC61966-2.1 (wide)", P3_D50, 2.2),            # Display P3 primaries, an sRGB-ish name
])
def test_icc_profile_with_an_srgb_name_but_other_contents_is_converted(tmp_path, name, primaries, gamma):
    icc = icc_profile(name, primaries, gamma)
    assert "srgb" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).lower()
    rgb = _photo_with_profile(tmp_path / "p.png", icc)
    img = load_image(tmp_path / "p.png")
    assert img.icc_converted is True
    expected = ImageCms.profileToProfile(Image.fromarray(rgb), ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                         ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")), outputMode="RGB")
    assert np.array_equal(img.rgb, np.asarray(expected))
    assert np.abs(img.rgb.astype(int) - rgb.astype(int)).max() > 10  # the conversion matters


def _srgb_curve_tag() -> bytes:
    """sRGB's own piecewise tone curve as an ICC parametric curve (function type 3)."""
    params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
    return b"para" + b"\0" * 4 + struct.pack(">HH", 3, 0) + b"".join(_s15f16(x) for x in params)


@pytest.mark.parametrize("name", ["Untitled display", "Monitor profile 2"])
def test_icc_profile_with_srgb_contents_is_kept_whatever_its_name(tmp_path, name):
    icc = icc_profile(name, SRGB_D50, 2.2, curve=_srgb_curve_tag())
    rgb = _photo_with_profile(tmp_path / "s.png", icc)
    img = load_image(tmp_path / "s.png")
    assert img.icc_converted is False and np.array_equal(img.rgb, rgb)


# --------------------------------------------------------------------------------------------------
# Finding 11: names with combining marks, NFC
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["कुर्ता-लाल", "cafe\u0301", "Ελληνικά", "tee ñ\u0303"])
def test_names_with_combining_marks_are_accepted_as_nfc(name):
    assert validate_sku(name) == unicodedata.normalize("NFC", name)


@pytest.mark.parametrize("name", ["\u0301abc", "a\u200bb", "a\x1bb", "a/b", "..x", "a..b", "a\u2028b"])
def test_marks_do_not_open_the_door_to_bad_names(name):
    with pytest.raises(InputError):
        validate_sku(name)


def test_nfd_folder_renders_under_its_nfc_name(tmp_path, monkeypatch, capsys):
    root = tmp_path / "products"
    _sku(root, "cafe\u0301", size=512)  # as macOS writes it
    _sku(root, "कुर्ता", size=512)
    code, out, err = _main(["run", root, "--catalog", tmp_path / "c", "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    assert "2 ok, 0 failed, 0 skipped" in out
    assert (tmp_path / "c" / "caf\u00e9" / "manifest.json").is_file()
    assert read_manifest(tmp_path / "c" / "caf\u00e9" / "manifest.json")["sku"] == "caf\u00e9"
    assert (tmp_path / "c" / "कुर्ता" / "manifest.json").is_file()


def test_two_folders_equal_after_nfc_are_a_clear_collision(tmp_path):
    root = tmp_path / "products"
    _sku(root, "cafe\u0301")
    _sku(root, "caf\u00e9")
    _sku(root, "tee")
    products, failures = discover_products(root)
    assert [p.sku for p in products] == ["tee"]
    assert len(failures) == 2
    for _name, _path, err in failures:
        assert "same name after Unicode normalisation" in str(err) and "rename" in str(err)


# --------------------------------------------------------------------------------------------------
# Finding 12: names checked up front; full disk and bad --catalog paths
# --------------------------------------------------------------------------------------------------


def test_sku_too_long_in_bytes_is_refused_up_front(tmp_path):
    name = "कु" * 40  # 80 characters, 480 bytes: under the character limit, over any file system's
    assert len(name) <= 128 and len(name.encode()) > SKU_MAX_BYTES
    with pytest.raises(InputError, match="bytes long in UTF-8"):
        validate_sku(name)
    ok = "क" * (SKU_MAX_BYTES // 3)
    assert validate_sku(ok) == ok


def test_photo_name_too_long_is_refused_naming_the_file(tmp_path):
    root = tmp_path / "products"
    stem = "é" * 100  # 200 bytes: the file exists, but work/alt-<stem>.preserve-mask.png would not fit
    d = _sku(root, "tee", photo="front.png")
    save_image(d / f"{stem}.png", draw_tee(64)[0])
    assert len(stem.encode()) > IMAGE_STEM_MAX_BYTES
    with pytest.raises(InputError) as err:
        load_product(d, root=root)
    assert stem in str(err.value) and "too long" in str(err.value) and "Errno" not in str(err.value)
    (d / f"{stem}.png").rename(d / f"{'é' * 90}.png")  # 180 bytes: fits, and renders
    r = process_sku(load_product(d, root=root), tmp_path / "c", get_engine("classic"), FAST)
    assert r.status == "ok", r.error


@pytest.mark.parametrize("case", ["file", "parent-missing", "unwritable"])
def test_unusable_catalog_path_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, case):
    root = tmp_path / "products"
    _sku(root, "tee")
    if case == "file":
        catalog = tmp_path / "catalog"
        catalog.write_text("not a folder")
    elif case == "parent-missing":
        catalog = tmp_path / "no" / "such" / "catalog"
    else:
        catalog = tmp_path / "ro"
        catalog.mkdir()
        catalog.chmod(0o500)
        if os.geteuid() == 0:  # root writes into read-only folders: inject the refusal a user would get
            import tempfile

            def refuse(*args, **kwargs):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(catalog))

            monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    code, out, err = _main(["run", root, "--catalog", catalog, "--no-progress"], monkeypatch, capsys)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vitrine: error: --catalog ") and "Traceback" not in err
    assert out == ""


def _disk_full_for(monkeypatch, sku: str | None, also_reports: bool = False):
    """Make atomic writes raise ENOSPC for files of ``sku``'s render (its staging folder) and, optionally, reports."""
    import pipelines.imageio as imageio

    real = imageio._atomic_write

    def write(path, fn):
        p = str(path)
        if (sku is not None and f"/.staging/{sku}." in p) or (also_reports and "/_reports/" in p):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), p)
        return real(path, fn)

    monkeypatch.setattr(imageio, "_atomic_write", write)


def test_disk_full_mid_batch_fails_that_sku_clearly_and_still_reports(tmp_path, monkeypatch, capsys):
    root = tmp_path / "products"
    for name in ("a-tee", "b-tee", "c-tee"):
        _sku(root, name)
    _disk_full_for(monkeypatch, "b-tee")
    code, out, err = _main(["run", root, "--catalog", tmp_path / "c", "--no-progress"], monkeypatch, capsys)
    assert code == 1, err
    assert "2 ok, 1 failed, 0 skipped" in out and "report: " in out
    failed = [ln for ln in err.splitlines() if "b-tee" in ln]
    assert len(failed) == 1 and "no space left on device" in failed[0] and "Traceback" not in err
    report = json.loads(Path(out.split("report: ")[1].strip()).read_text())
    entry = next(e for e in report["entries"] if e["sku"] == "b-tee")
    assert entry["status"] == "failed" and "no space left on device" in entry["error"]
    assert not (tmp_path / "c" / "b-tee").exists() and (tmp_path / "c" / "a-tee" / "manifest.json").is_file()


def test_disk_full_for_the_report_is_one_line_exit_2_after_the_summary(tmp_path, monkeypatch, capsys):
    root = tmp_path / "products"
    _sku(root, "tee")
    _disk_full_for(monkeypatch, None, also_reports=True)
    code, out, err = _main(["run", root, "--catalog", tmp_path / "c", "--no-progress"], monkeypatch, capsys)
    assert code == 2
    assert "1 ok, 0 failed, 0 skipped" in out
    assert "could not write the batch report" in err and "no space left on device" in err
    assert "Traceback" not in err and len([ln for ln in err.splitlines() if ln.strip()]) == 1


# --------------------------------------------------------------------------------------------------
# Finding 13 (limits): seeds, backgrounds, outputs per SKU
# --------------------------------------------------------------------------------------------------


def test_seed_limit_names_product_yaml_and_the_key(tmp_path):
    path = tmp_path / "product.yaml"
    path.write_text(f"seeds: {list(range(SEEDS_MAX + 1))}\n")
    with pytest.raises(InputError) as err:
        load_product_spec(path)
    assert err.value.path == str(path) and err.value.key == "seeds" and str(SEEDS_MAX) in str(err.value)
    path.write_text("seeds: [" + ", ".join(map(str, range(100_000))) + "]\n")
    with pytest.raises(InputError, match=r"\[seeds\]"):
        load_product_spec(path)
    path.write_text(f"seeds: {list(range(SEEDS_MAX))}\n")
    assert len(load_product_spec(path).seeds) == SEEDS_MAX


def test_backgrounds_are_bounded_by_their_choices(tmp_path):
    path = tmp_path / "product.yaml"
    path.write_text("backgrounds: [white, studio, texture, studio]\n")
    with pytest.raises(InputError, match=r"\[backgrounds\]"):
        load_product_spec(path)


def test_output_limit_per_sku_names_product_yaml(tmp_path):
    root = tmp_path / "products"
    d = _sku(root, "tee", yaml=f"backgrounds: [white, studio, texture]\nseeds: {list(range(SEEDS_MAX))}\n")
    for i in range(OUTPUTS_MAX - 2 * SEEDS_MAX):  # alternates push the plan over the limit
        save_image(d / f"alt{i:02d}.png", draw_tee(32)[0])
    with pytest.raises(InputError) as err:
        load_product(d, root=root)
    assert err.value.path == str(d / "product.yaml") and err.value.key == "seeds"
    assert f"the limit is {OUTPUTS_MAX}" in str(err.value)


# --------------------------------------------------------------------------------------------------
# Finding 14: a folder without SKU folders; unsupported photo formats
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["empty", "loose-photos", "one-sku-folder", "sku-with-masks"])
def test_a_folder_without_sku_folders_is_an_error_showing_the_layout(tmp_path, monkeypatch, capsys, layout):
    products = tmp_path / "products"
    products.mkdir()
    if layout == "loose-photos":
        save_image(products / "front.jpg", draw_tee(64)[0])
        save_image(products / "back.jpg", draw_tee(64)[0])
    elif layout == "one-sku-folder":
        products = _sku(tmp_path / "p2", "tee")
    elif layout == "sku-with-masks":
        products = _sku(tmp_path / "p2", "tee", yaml=None)
        (products / "masks").mkdir()
        save_image(products / "masks" / "product.png", draw_tee(64)[0])
    code, out, err = _main(["run", products, "--catalog", tmp_path / "c", "--no-progress"], monkeypatch, capsys)
    assert code == 2, out + err
    assert "0 ok" not in out
    assert "expected one folder per SKU" in err and "SKU-123/" in err and "front.jpg" in err
    assert not (tmp_path / "c" / "_reports").exists()


def test_heic_only_sku_fails_naming_the_file_and_the_supported_formats(tmp_path):
    root = tmp_path / "products"
    d = root / "tee"
    d.mkdir(parents=True)
    (d / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 64)
    products, failures = discover_products(root)
    assert not products
    message = str(failures[0][2])
    assert "IMG_0001.HEIC" in message and ".jpg" in message and ".webp" in message and "no product image" in message


def test_heic_next_to_a_jpeg_is_reported_in_the_batch(tmp_path, monkeypatch, capsys):
    root = tmp_path / "products"
    d = _sku(root, "tee")
    (d / "side.heic").write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 64)
    (d / "detail.avif").write_bytes(b"\0\0\0\x18ftypavif" + b"\0" * 64)
    code, out, err = _main(["run", root, "--catalog", tmp_path / "c", "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    assert "side.heic" in err and "detail.avif" in err and "unsupported" in err
    report = json.loads(Path(out.split("report: ")[1].strip()).read_text())
    assert any("side.heic" in w for w in report["entries"][0]["warnings"])


# --------------------------------------------------------------------------------------------------
# Finding 8: no orphaned Prefect server; flow runs survive a dead stdout pipe
# --------------------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid``, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_cli_leaves_no_prefect_server(tmp_path, sig):
    root = tmp_path / "products"
    for i in range(6):
        _sku(root, f"tee-{i}", yaml="backgrounds: [white, studio, texture]\nseeds: [0, 1, 2]\n")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(root), "--catalog", str(tmp_path / "c"),
                             "--no-progress", "--prefect"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    servers: list[int] = []
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and not servers and proc.poll() is None:
            servers = [p for p in _children(proc.pid) if "uvicorn" in _cmdline(p)]
            time.sleep(0.2)
        assert servers, "the --prefect run never started its API server"
        time.sleep(1.0)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in servers):
            time.sleep(0.2)
        assert not any(_alive(p) for p in servers), [(p, _cmdline(p)) for p in servers if _alive(p)]
    finally:
        for p in [proc.pid, *servers]:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


_PIPE_WRITER = r"""
import logging, sys, time
from flows.prefect_local import survive_dead_pipes
if sys.argv[1] == "guard":
    survive_dead_pipes(interval_s=0.05)
from rich.console import Console
console = Console(file=sys.stdout, force_terminal=False)
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
sys.stdout.write("ready\n"); sys.stdout.flush()
time.sleep(1.0)                       # the reader (a killed worker) goes away meanwhile
for i in range(200):
    console.print(f"SKU {i}: ok " + "x" * 200)
    print("plain print", i)
    logging.info("log line %d", i)
    time.sleep(0.005)
sys.stdout.flush()
open(sys.argv[2], "w").write("finished")
"""


@pytest.mark.parametrize("mode", ["guard", "no-guard"])
def test_a_run_survives_its_reader_dying(tmp_path, mode):
    marker = tmp_path / "finished"
    proc = subprocess.Popen([sys.executable, "-c", _PIPE_WRITER, mode, str(marker)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\n"
    proc.stdout.close()  # the worker holding the pipes is killed
    proc.stderr.close()
    code = proc.wait(timeout=60)
    if mode == "guard":
        assert code == 0 and marker.read_text() == "finished"
    else:  # the finding, reproduced: without the guard the run dies on the broken pipe
        assert code != 0 and not marker.exists()


_FLOW_RUN = r"""
import json, sys
print("ready", flush=True)
from flows.catalog_batch import catalog_batch
result = catalog_batch(sys.argv[1], sys.argv[2], engine="classic")
print("done " * 2000, flush=True)
open(sys.argv[3], "w").write(json.dumps(result))
"""


@pytest.mark.slow
def test_the_batch_flow_finishes_after_its_reader_dies(tmp_path):
    """The real flow, with Prefect's console logging at INFO, its stdout and stderr pipes closed at start:
    before the fix rich's broken-pipe handler raised SystemExit(1) on the next log line and no report was
    written."""
    root = tmp_path / "products"
    for i in range(3):
        _sku(root, f"tee-{i}")
    marker = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_LOGGING_LEVEL="INFO")
    proc = subprocess.Popen([sys.executable, "-c", _FLOW_RUN, str(root), str(tmp_path / "c"), str(marker)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\n"
    proc.stdout.close()
    proc.stderr.close()
    assert proc.wait(timeout=300) == 0
    result = json.loads(marker.read_text())
    assert result["counts"] == {"ok": 3, "failed": 0, "skipped": 0} and Path(result["report_path"]).is_file()
