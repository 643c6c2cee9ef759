"""The `vitrine` command line as outside scripts use it: arguments, files written, exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.imageio import save_image

REPO = Path(__file__).resolve().parents[2]
VITRINE = [sys.executable, "-m", "flows.cli"]


def vitrine(*args, env_extra=None, timeout=600):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([*VITRINE, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut_rgb, drawn_products):
    d = tmp_path_factory.mktemp("photos")
    save_image(d / "astronaut.jpg", astronaut_rgb, quality=95)
    save_image(d / "tee.png", drawn_products["tee"][0])
    return d


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "vitrine"
    assert exe.is_file()
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("vitrine ")


def test_segment_person_writes_a_binary_mask_of_the_exact_size(photos, tmp_path):
    out = tmp_path / "mask.png"
    r = vitrine("segment", photos / "astronaut.jpg", "--prompt", "person", "--out", out)
    assert r.returncode == 0, r.stderr
    mask = np.asarray(Image.open(out))
    assert mask.shape == (512, 512) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    assert 0.25 < (mask > 0).mean() < 0.8


def test_segment_folder_writes_one_mask_per_image(photos, tmp_path):
    out = tmp_path / "masks"
    r = vitrine("segment", photos, "--prompt", "person", "--out", out)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.png", "tee.png"]
    # A garment: classic refuses the on-model photo (it would return the whole body) and writes the tee.
    out = tmp_path / "garments"
    r = vitrine("segment", photos, "--prompt", "garment", "--out", out)
    assert r.returncode == 2 and "cannot isolate 'garment'" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["tee.png"]
    tee = np.asarray(Image.open(out / "tee.png"))
    assert tee.shape == (512, 512) and 0.2 < (tee > 0).mean() < 0.6


def test_segment_unknown_prompt_on_classic_is_a_clear_error(photos, tmp_path):
    r = vitrine("segment", photos / "tee.png", "--prompt", "hair", "--out", tmp_path / "m.png")
    assert r.returncode == 2
    assert "classic engine cannot segment 'hair'" in r.stderr and "grounded-sam" in r.stderr
    assert not (tmp_path / "m.png").exists()


def test_pose_writes_coco17_json_and_skeleton(photos, tmp_path):
    r = vitrine("pose", photos / "astronaut.jpg", "--json", tmp_path / "pose.json", "--out", tmp_path / "skel.png")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "pose.json").read_text())
    assert data["width"] == 512 and data["height"] == 512
    kps = np.array(data["keypoints"], dtype=float)
    assert kps.shape == (17, 3)
    assert kps[0, 2] > 0.5 and 0 <= kps[0, 0] < 512 and 0 <= kps[0, 1] < 512  # nose found, inside the image
    assert kps[0, 1] < kps[5, 1] and kps[0, 1] < kps[6, 1]  # nose above the shoulders
    skel = np.asarray(Image.open(tmp_path / "skel.png"))
    assert skel.shape == (512, 512, 3) and skel.any()


def test_pose_folder_mode(photos, tmp_path):
    r = vitrine("pose", photos, "--json", tmp_path / "json", "--out", tmp_path / "skel")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "json").iterdir()) == ["astronaut.json", "tee.json"]
    assert sorted(p.name for p in (tmp_path / "skel").iterdir()) == ["astronaut.png", "tee.png"]


def test_missing_input_exits_2(tmp_path):
    r = vitrine("segment", tmp_path / "nope.jpg", "--prompt", "person", "--out", tmp_path / "m.png")
    assert r.returncode == 2 and "nope.jpg" in r.stderr


@pytest.mark.slow
def test_run_exit_codes_and_report(tmp_path, drawn_products):
    products = tmp_path / "products"
    good = products / "tee"
    good.mkdir(parents=True)
    save_image(good / "front.png", drawn_products["tee"][0])
    (good / "product.yaml").write_text("backgrounds: [white]\n")
    env = {"PREFECT_HOME": str(tmp_path / "prefect")}
    catalog = tmp_path / "catalog"
    r = vitrine("run", products, "--catalog", catalog, "--no-progress", env_extra=env)
    assert r.returncode == 0, r.stdout + r.stderr
    report_line = [ln for ln in r.stdout.splitlines() if ln.startswith("report: ")]
    assert len(report_line) == 1
    report = json.loads(Path(report_line[0][len("report: "):]).read_text())
    assert report["counts"] == {"ok": 1, "failed": 0, "skipped": 0}

    broken = products / "broken"
    broken.mkdir()
    (broken / "front.jpg").write_bytes(b"")
    r = vitrine("run", products, "--catalog", catalog, "--no-progress", env_extra=env)
    assert r.returncode == 1
    assert "failed: broken" in r.stderr
    report = json.loads(Path(r.stdout.split("report: ")[1].strip()).read_text())
    assert report["counts"] == {"ok": 0, "failed": 1, "skipped": 1}

    r = vitrine("verify", catalog)
    assert r.returncode == 0 and "tee\tok" in r.stdout


def test_max_upscale_flag_env_and_bad_values(tmp_path, drawn_products):
    """--max-upscale (and $VITRINE_MAX_UPSCALE) set the refusal limit of RenderOptions.max_upscale: a 512 px
    photo on the 2000 px main canvas is enlarged ~4.8x, so a 1.5x limit fails that SKU with its photo named."""
    products = tmp_path / "products"
    sku = products / "tee"
    sku.mkdir(parents=True)
    save_image(sku / "front.png", drawn_products["tee"][0])
    (sku / "product.yaml").write_text("backgrounds: [white]\n")
    env = {"PREFECT_HOME": str(tmp_path / "prefect")}
    catalog = tmp_path / "catalog"
    r = vitrine("run", products, "--catalog", catalog, "--no-progress", "--max-upscale", "1.5", env_extra=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "failed: tee" in r.stderr and "front.png" in r.stderr and "512x512 photo" in r.stderr
    r = vitrine("run", products, "--catalog", catalog, "--no-progress", env_extra={**env, "VITRINE_MAX_UPSCALE": "1.5"})
    assert r.returncode == 1 and "failed: tee" in r.stderr
    # the flag wins over the environment
    r = vitrine("run", products, "--catalog", catalog, "--no-progress", "--max-upscale", "6",
                env_extra={**env, "VITRINE_MAX_UPSCALE": "1.5"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads((catalog / "tee" / "manifest.json").read_text())["parameters"]["render"]["max_upscale"] == 6.0
    r = vitrine("run", products, "--catalog", catalog, "--no-progress", "--max-upscale", "0.5", env_extra=env)
    assert r.returncode == 2 and "upscale must be a number >= 1" in r.stderr
    r = vitrine("run", products, "--catalog", catalog, env_extra={**env, "VITRINE_MAX_UPSCALE": "lots"})
    assert r.returncode == 2 and "VITRINE_MAX_UPSCALE" in r.stderr


@pytest.mark.slow
def test_demo_builds_a_catalog_that_verifies(tmp_path):
    env = {"PREFECT_HOME": str(tmp_path / "prefect")}
    catalog = tmp_path / "catalog"
    r = vitrine("demo", "--catalog", catalog, "--products", tmp_path / "products", "--no-progress", env_extra=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 ok, 0 failed, 0 skipped" in r.stdout
    from pipelines.catalog.manifest import read_manifest, validate_manifest

    for sku in ("astronaut", "grace-hopper", "tee-navy", "tote-canvas", "dress-red"):
        m = read_manifest(catalog / sku / "manifest.json")
        validate_manifest(m)
        assert m["quality"]["main_white_background_ok"] is True
    people = {s: read_manifest(catalog / s / "manifest.json")["subjects"][0]["kind"] for s in ("astronaut", "tee-navy")}
    assert people == {"astronaut": "person", "tee-navy": "product"}
    r = vitrine("verify", catalog)
    assert r.returncode == 0, r.stdout
    assert r.stdout.count("\tok\t") == 5
