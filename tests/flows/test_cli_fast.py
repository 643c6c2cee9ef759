"""Issue 15 item 4, a fast and quiet CLI: local runs without Prefect, native log noise silenced at the fd
level, one line per failure, short weights-missing errors, a quiet BrokenPipe. Start-up times are measured
by bench/cli_startup.py, not here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.catalog.options import RenderOptions
from pipelines.catalog.render import process_sku
from pipelines.engines.registry import get_engine
from pipelines.imageio import save_image
from pipelines.product import load_product
from pipelines.samples import astronaut, draw_tee

REPO = Path(__file__).resolve().parents[2]
NATIVE_NOISE = ("W0000", "XNNPACK", "absl::InitializeLog", "inference_feedback_manager")


def _env(tmp_path: Path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "VITRINE_NATIVE_LOGS")}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(tmp_path / "prefect-home"), **extra)
    return env


def vitrine(tmp_path, *args, env_extra=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "flows.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=_env(tmp_path, **(env_extra or {})))


def _products(root: Path, names=("tee",), broken=()) -> Path:
    for name in names:
        d = root / name
        d.mkdir(parents=True)
        save_image(d / "front.png", draw_tee(512)[0])
        (d / "product.yaml").write_text("backgrounds: [white]\n")
    for name in broken:
        d = root / name
        d.mkdir(parents=True)
        (d / "front.jpg").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory):
    """A catalog with one entry that has a lifestyle output (something for `vitrine edit` to edit)."""
    root = tmp_path_factory.mktemp("cat")
    d = root / "products" / "tee"
    d.mkdir(parents=True)
    save_image(d / "front.png", draw_tee(512)[0])
    (d / "product.yaml").write_text("backgrounds: [white, studio]\n")
    r = process_sku(load_product(d), root / "catalog", get_engine("classic"),
                    RenderOptions(canvas=256, lifestyle_size=(200, 240)))
    assert r.status == "ok"
    return root / "catalog"


_TWO_RUNS = r"""
import json, sys
from flows.cli import main
codes = [main(["run", sys.argv[1], "--catalog", sys.argv[2], "--no-progress"]) for _ in range(2)]
print(json.dumps({"codes": codes, "prefect_imported": any(m == "prefect" or m.startswith("prefect.")
                                                          for m in sys.modules)}))
"""


def test_local_run_and_its_skipped_rerun_need_no_prefect(tmp_path):
    products = _products(tmp_path / "products", names=("tee", "tee-2"))
    r = subprocess.run([sys.executable, "-c", _TWO_RUNS, str(products), str(tmp_path / "c")], cwd=REPO,
                       capture_output=True, text=True, timeout=300, env=_env(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    result = json.loads(lines[-1])
    assert result == {"codes": [0, 0], "prefect_imported": False}
    assert "2 ok, 0 failed, 0 skipped" in lines and "0 ok, 0 failed, 2 skipped" in lines
    reports = [ln.removeprefix("report: ") for ln in lines if ln.startswith("report: ")]
    assert len(reports) == 2
    last = json.loads(Path(reports[-1]).read_text())
    assert last["counts"] == {"ok": 0, "failed": 0, "skipped": 2} and last["runner"]["orchestrator"] == "local"


def test_each_failure_is_one_line(tmp_path):
    products = _products(tmp_path / "products", names=("tee",), broken=("broken",))
    r = vitrine(tmp_path, "run", products, "--catalog", tmp_path / "c", "--no-progress")
    assert r.returncode == 1
    mentions = [ln for ln in r.stderr.splitlines() if "broken" in ln]
    assert len(mentions) == 1, r.stderr
    assert mentions[0].startswith("failed: broken: ") and "empty" in mentions[0]
    assert "1 ok, 1 failed, 0 skipped" in r.stdout


def test_verbose_still_shows_the_library_logs(tmp_path):
    products = _products(tmp_path / "products", names=("tee",), broken=("broken",))
    r = vitrine(tmp_path, "-v", "run", products, "--catalog", tmp_path / "c", "--no-progress")
    assert r.returncode == 1
    assert sum("broken" in ln for ln in r.stderr.splitlines()) > 1  # the logs, then the summary line


@pytest.fixture(scope="module")
def person_photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("person") / "astronaut.jpg"
    save_image(path, astronaut())
    return path


def test_native_log_lines_are_silenced_in_the_cli(tmp_path, person_photo):
    r = vitrine(tmp_path, "pose", person_photo, "--json", tmp_path / "p.json")
    assert r.returncode == 0, r.stderr
    assert not any(n in r.stderr for n in NATIVE_NOISE), r.stderr
    loud = vitrine(tmp_path, "pose", person_photo, "--json", tmp_path / "p.json",
                   env_extra={"VITRINE_NATIVE_LOGS": "1"})
    assert loud.returncode == 0
    assert any(n in loud.stderr for n in NATIVE_NOISE), "mediapipe no longer logs: this test proves nothing"


_LIBRARY_CALL = r"""
import sys
from pipelines.controls.pose import get_pose_estimator
from pipelines.segmentation.person import get_person_segmenter
from pipelines.imageio import load_image
img = load_image(sys.argv[1]).rgb
get_pose_estimator()(img)
get_person_segmenter()(img)
print("python's own message", file=sys.stderr)
"""


def test_native_log_lines_are_silenced_in_library_calls(tmp_path, person_photo):
    """What a notebook does: call the library directly; Python's own stderr messages still show."""
    r = subprocess.run([sys.executable, "-c", _LIBRARY_CALL, str(person_photo)], cwd=REPO, capture_output=True,
                       text=True, timeout=300, env=_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert not any(n in r.stderr for n in NATIVE_NOISE), r.stderr
    assert "python's own message" in r.stderr


def test_flux_without_weights_fails_fast_with_a_short_message(tmp_path):
    products = _products(tmp_path / "products")
    (tmp_path / "models").mkdir()
    r = vitrine(tmp_path, "run", products, "--catalog", tmp_path / "c", "--engine", "flux",
                "--model-root", tmp_path / "models", "--no-progress")
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "flux" in lines[0] and "--engine classic" in lines[0] and "--model-root" in lines[0]
    assert "Traceback" not in r.stderr and not (tmp_path / "c" / "_reports").exists()


def test_edit_without_weights_says_so_once(tmp_path, small_catalog):
    (tmp_path / "models").mkdir()
    r = vitrine(tmp_path, "edit", small_catalog, "--instruction", "white marble floor",
                "--model-root", tmp_path / "models")
    assert r.returncode == 2
    assert r.stderr.count("vitrine: error:") == 1 and r.stderr.count("not found") == 1, r.stderr
    assert r.stderr.count("hf download black-forest-labs/FLUX.1-Kontext-dev") == 1  # how to get the weights
    assert "Traceback" not in r.stderr and "Encountered exception" not in r.stderr


def test_verify_into_a_closed_pipe_exits_quietly(tmp_path, small_catalog):
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "verify", str(small_catalog)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path))
    proc.stdout.close()  # `| head -0`: the reader is gone before verify writes
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert code == 141


def test_prefect_api_configured_reads_the_environment_and_the_active_profile(tmp_path):
    from flows.local_batch import prefect_api_configured

    assert prefect_api_configured({"PREFECT_API_URL": "http://127.0.0.1:4200/api"})
    home = tmp_path / "ph"
    home.mkdir()
    assert not prefect_api_configured({"PREFECT_HOME": str(home)})
    (home / "profiles.toml").write_text('active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://x:4200/api"\n'
                                        '[profiles.ephemeral]\n')
    assert prefect_api_configured({"PREFECT_HOME": str(home)})
    assert not prefect_api_configured({"PREFECT_HOME": str(home), "PREFECT_PROFILE": "ephemeral"})


@pytest.mark.slow
def test_prefect_flag_runs_the_flow(tmp_path):
    products = _products(tmp_path / "products")
    r = vitrine(tmp_path, "run", products, "--catalog", tmp_path / "c", "--no-progress", "--prefect")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 ok, 0 failed, 0 skipped" in r.stdout
    report = json.loads(Path(r.stdout.split("report: ")[1].strip()).read_text())
    assert "orchestrator" not in report["runner"] and len(report["run_id"]) == 36  # a Prefect flow-run id


# -- a catalog at an fsspec URL is a URL all the way down (pipelines/catalog/publish.py) ---------------------
@pytest.fixture()
def memory_catalog():
    """``memory://`` (fsspec's in-process store): the object-store path with no network; emptied afterwards."""
    import fsspec

    fs = fsspec.filesystem("memory")
    yield fs, "memory://vitrine-cli-test/catalog"
    if fs.exists("/vitrine-cli-test"):
        fs.rm("/vitrine-cli-test", recursive=True)


def test_run_publishes_to_a_catalog_url_and_skips_it_on_a_rerun(tmp_path, monkeypatch, memory_catalog, capsys):
    from flows.cli import main

    fs, url = memory_catalog
    products = _products(tmp_path / "products", names=("tee", "tote"))
    monkeypatch.chdir(tmp_path)  # a URL collapsed to a path ("memory:/...") would be created here
    monkeypatch.setenv("VITRINE_SCRATCH", str(tmp_path / "scratch"))
    args = ["run", str(products), "--catalog", url, "--engine", "classic", "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "2 ok, 0 failed, 0 skipped" in out
    report_url = out.split("report: ")[1].strip()
    assert report_url.startswith(f"{url}/_reports/") and fs.exists(report_url)
    report = json.loads(fs.cat(report_url))
    assert report["catalog_dir"] == url and {e["manifest"] for e in report["entries"]} == {
        f"{url}/tee/manifest.json", f"{url}/tote/manifest.json"}
    manifest = json.loads(fs.cat(f"{url}/tee/manifest.json"))
    assert all(fs.exists(f"{url}/tee/{o['file']}") for o in manifest["outputs"])
    assert not (tmp_path / "memory:").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "products", "scratch"]
    assert main(args) == 0  # the remote entries are current: skipped without rendering
    assert "0 ok, 0 failed, 2 skipped" in capsys.readouterr().out


def test_run_with_a_url_whose_backend_is_missing_gives_the_library_s_error(tmp_path, monkeypatch, capsys):
    import importlib.util

    from flows.cli import main
    from pipelines.catalog.publish import RemoteCatalog
    from pipelines.errors import InputError

    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed: an s3:// URL would reach for the network")
    with pytest.raises(InputError) as direct:  # what the library says when called directly
        RemoteCatalog("s3://bucket/catalog")
    products = _products(tmp_path / "products")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VITRINE_SCRATCH", str(tmp_path / "scratch"))
    assert main(["run", str(products), "--catalog", "s3://bucket/catalog", "--engine", "classic",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vitrine: error: {direct.value}"] and "s3fs" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["products"]  # nothing rendered, no "s3:" folder


# -- the contact sheet is drawn again only when what it shows changed ----------------------------------------
def test_a_fully_skipped_run_reuses_the_contact_sheet_until_something_changes(tmp_path, monkeypatch, capsys):
    import pipelines.catalog.contact_sheet as cs
    from flows.cli import main
    from pipelines.catalog.review import record_decision

    products, catalog = _products(tmp_path / "products", names=("tee", "tote")), tmp_path / "c"
    real_draw, real_write = cs.catalog_contact_sheets, cs.atomic_write_json

    def run() -> tuple[Path, dict, int, int]:
        """One ``vitrine run``: its report, the sheets drawn and the report rewrites by the contact-sheet step."""
        calls = {"draw": 0, "write": 0}

        def draw(*a, **k):
            calls["draw"] += 1
            return real_draw(*a, **k)

        def write(*a, **k):
            calls["write"] += 1
            return real_write(*a, **k)

        monkeypatch.setattr(cs, "catalog_contact_sheets", draw)
        monkeypatch.setattr(cs, "atomic_write_json", write)
        assert main(["run", str(products), "--catalog", str(catalog), "--engine", "classic", "--no-progress"]) == 0
        path = Path(capsys.readouterr().out.split("report: ")[1].strip())
        return path, json.loads(path.read_text()), calls["draw"], calls["write"]

    def pngs() -> list[str]:
        return sorted(p.name for p in (catalog / "_reports").glob("*.png"))

    p1, r1, drawn, _ = run()
    assert drawn == 1 and r1["contact_sheets"] == [f"_reports/{p1.stem}.contact-sheet.png"]
    sheet = catalog / r1["contact_sheets"][0]
    before = sheet.read_bytes()
    # 1. Everything skipped, nothing changed: no sheet drawn, the report written once and listing the same sheet.
    p2, r2, drawn, rewrites = run()
    assert r2["counts"] == {"ok": 0, "failed": 0, "skipped": 2} and p2 != p1
    assert (drawn, rewrites) == (0, 0) and r2["contact_sheets"] == r1["contact_sheets"]
    assert pngs() == [sheet.name] and sheet.read_bytes() == before
    # 2. A review decision changed: skipped again, but the sheet is drawn anew (and then reused again).
    record_decision(catalog, "tee", "main.png", "approve")
    p3, r3, drawn, _ = run()
    assert r3["counts"]["skipped"] == 2 and drawn == 1
    assert r3["contact_sheets"] == [f"_reports/{p3.stem}.contact-sheet.png"] and len(pngs()) == 2
    p4, r4, drawn, rewrites = run()
    assert (drawn, rewrites) == (0, 0) and r4["contact_sheets"] == r3["contact_sheets"]
    # 3. A sheet that is gone is drawn again.
    (catalog / r3["contact_sheets"][0]).unlink()
    p5, r5, drawn, _ = run()
    assert drawn == 1 and r5["contact_sheets"] == [f"_reports/{p5.stem}.contact-sheet.png"]
