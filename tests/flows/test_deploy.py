"""Operations pieces without a server: schedules, deployments, shards, the GPU guard, workers, storage."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


# -- shards ---------------------------------------------------------------------------------------------
def test_shards_are_sorted_contiguous_balanced_and_cover_every_sku_once():
    from flows.sharding import plan_shards

    skus = [f"sku-{i:03d}" for i in range(10)][::-1] + ["sku-003"]
    shards = plan_shards(skus, 4)
    assert [len(s) for s in shards] == [4, 3, 3]
    assert [x for s in shards for x in s] == sorted(set(skus))
    assert plan_shards(skus, 4) == shards  # the same folder gives the same shards
    assert plan_shards(skus, 100) == [sorted(set(skus))]
    assert plan_shards([], 5) == []
    assert [len(s) for s in plan_shards([str(i) for i in range(101)], 50)] == [34, 34, 33]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="shard_size"):
            plan_shards(skus, bad)


# -- schedules and deployments ----------------------------------------------------------------------------
def test_schedules_file_merges_defaults_and_makes_paths_absolute(tmp_path, monkeypatch):
    from flows.deploy import load_schedules

    monkeypatch.chdir(tmp_path)
    f = tmp_path / "schedules.yaml"
    f.write_text(
        "defaults:\n  catalog_dir: cat\n  engine: classic\n  timezone: Europe/Berlin\n"
        "folders:\n"
        "  - {name: shop-a, products_dir: products/a, cron: '0 2 * * *'}\n"
        "  - {name: shop-b, products_dir: s3://bucket/b, catalog_dir: s3://bucket/cat, shard_size: 50}\n"
    )
    a, b = load_schedules(f)
    assert (a.name, a.products_dir, a.catalog_dir, a.engine, a.timezone) == (
        "shop-a", str(tmp_path / "products" / "a"), str(tmp_path / "cat"), "classic", "Europe/Berlin")
    assert a.shard_size is None and b.shard_size == 50 and b.cron is None
    assert (b.products_dir, b.catalog_dir) == ("s3://bucket/b", "s3://bucket/cat")  # URLs kept as they are
    assert b.scatter_parameters()["deployment"] == "catalog-batch/shop-b"


@pytest.mark.parametrize("folder, message", [
    ("{name: a, products_dir: p, cron: '61 2 * * *'}", "folders[0] (a): cron: Value error, '61 2 * * *' is not a 5"),
    ("{name: a, products_dir: p, crontab: '0 2 * * *'}", "folders[0] (a): crontab: Extra inputs"),
    ("{name: 'a b', products_dir: p}", "is not a deployment name"),
    ("{name: a, products_dir: p, timezone: Mars/Olympus}", "is not an IANA time zone"),
    ("{name: a, products_dir: p, shard_size: 0}", "shard_size: Input should be greater than or equal to 1"),
])
def test_schedules_file_errors_name_the_file_folder_and_key(tmp_path, folder, message):
    from flows.deploy import load_schedules
    from pipelines.errors import InputError

    f = tmp_path / "s.yaml"
    f.write_text(f"folders:\n  - {folder}\n")
    with pytest.raises(InputError) as exc:
        load_schedules(f)
    assert str(f) in str(exc.value) and message in str(exc.value)


def test_duplicate_folder_names_are_refused(tmp_path):
    from flows.deploy import load_schedules
    from pipelines.errors import InputError

    f = tmp_path / "s.yaml"
    f.write_text("folders:\n  - {name: a, products_dir: p}\n  - {name: a, products_dir: q}\n")
    with pytest.raises(InputError, match=r"duplicate folder names \['a'\]"):
        load_schedules(f)


def test_deployments_carry_the_folder_schedule_and_flow_parameters():
    from flows.catalog_batch import catalog_batch
    from flows.deploy import FolderSchedule, batch_deployment, scatter_deployment
    from flows.sharding import catalog_scatter

    spec = FolderSchedule(name="shop-a", products_dir="/p", catalog_dir="/c", cron="0 2 * * *",
                          timezone="Europe/Berlin", engine="classic", shard_size=25)
    batch = batch_deployment(spec, work_pool="vitrine-gpu", scheduled=False)
    assert batch.entrypoint == "flows.catalog_batch.catalog_batch" and batch.work_pool_name == "vitrine-gpu"
    assert batch.schedules == [] and batch.parameters == {
        "products_dir": "/p", "catalog_dir": "/c", "engine": "classic", "model_root": None, "force": False}
    scatter = scatter_deployment(spec, work_pool="vitrine-dispatch")
    assert scatter.entrypoint == "flows.sharding.catalog_scatter"
    (sched,) = scatter.schedules
    assert (sched.schedule.cron, sched.schedule.timezone) == ("0 2 * * *", "Europe/Berlin")
    assert scatter.parameters["deployment"] == "catalog-batch/shop-a" and scatter.parameters["shard_size"] == 25
    for dep, fl in ((batch, catalog_batch), (scatter, catalog_scatter)):
        assert set(dep.parameters) <= set(inspect.signature(fl.fn).parameters)
    served = batch_deployment(spec)  # serve: scheduled, no pool
    assert served.work_pool_name is None and served.schedules[0].schedule.cron == "0 2 * * *"


def test_prefect_yaml_names_real_flows_parameters_and_valid_crons():
    import importlib

    from prefect.client.schemas.schedules import CronSchedule

    data = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert data["deployments"]
    pairs = set()
    for dep in data["deployments"]:
        path, func = dep["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        fl = getattr(module, func)
        assert (REPO / path).is_file()
        assert set(dep["parameters"]) <= set(inspect.signature(fl.fn).parameters), dep["name"]
        assert dep["work_pool"]["name"] in ("vitrine-gpu", "vitrine-dispatch")
        for s in dep["schedules"]:
            CronSchedule(cron=s["cron"], timezone=s["timezone"])
        pairs.add((fl.name, dep["name"]))
        if fl.name == "catalog-scatter":
            assert ("catalog-batch", dep["parameters"]["deployment"].split("/")[1]) in pairs


# -- GPU guard ------------------------------------------------------------------------------------------
class _Engine:
    name = "fake-gpu"

    def describe(self):
        return {"name": self.name}

    def find_subject(self, *a):
        return "subject"

    def background(self, *a, **k):
        return "background"


def test_gpu_guard_holds_the_limit_around_model_calls_only(monkeypatch):
    import contextlib

    import prefect.concurrency.sync as conc

    from flows.gpu import GpuGuardedEngine, guard_engine
    from pipelines.settings import load_settings

    calls = []

    @contextlib.contextmanager
    def fake(names, occupy=1, **kw):
        calls.append(("enter", names, occupy, kw["lease_duration"], kw["strict"]))
        yield
        calls.append(("exit", names))

    monkeypatch.setattr(conc, "concurrency", fake)
    monkeypatch.setenv("VITRINE_GPU_LIMIT", "vitrine-gpu-box-0")
    monkeypatch.delenv("VITRINE_GPU_GUARD", raising=False)
    eng = guard_engine(_Engine(), load_settings())
    assert isinstance(eng, GpuGuardedEngine) and eng.name == "fake-gpu"
    assert eng.describe() == {"name": "fake-gpu"} and calls == []  # metadata: no slot
    assert eng.find_subject(1) == "subject" and eng.background(1, seed=2) == "background"
    assert calls == [("enter", "vitrine-gpu-box-0", 1, 60.0, False), ("exit", "vitrine-gpu-box-0")] * 2


def test_gpu_guard_modes(monkeypatch):
    from flows.gpu import GpuGuardedEngine, guard_engine
    from pipelines.settings import load_settings
    from pipelines.engines.registry import get_engine

    classic = get_engine("classic")
    monkeypatch.delenv("VITRINE_GPU_LIMIT", raising=False)
    assert guard_engine(_Engine(), load_settings()).__class__ is _Engine  # no GPU limit: as is
    monkeypatch.setenv("VITRINE_GPU_LIMIT", "vitrine-gpu-box-0")
    monkeypatch.setenv("VITRINE_GPU_GUARD", "auto")
    assert guard_engine(classic, load_settings()) is classic  # CPU-only engine: no API round trip per call
    assert isinstance(guard_engine(_Engine(), load_settings()), GpuGuardedEngine)
    monkeypatch.setenv("VITRINE_GPU_GUARD", "always")
    assert isinstance(guard_engine(classic, load_settings()), GpuGuardedEngine)
    monkeypatch.setenv("VITRINE_GPU_GUARD", "never")
    assert guard_engine(_Engine(), load_settings()).__class__ is _Engine
    monkeypatch.setenv("VITRINE_GPU_GUARD", "sometimes")
    with pytest.raises(ValueError, match="VITRINE_GPU_GUARD='sometimes'"):
        guard_engine(classic, load_settings())


def test_gpu_limit_names():
    from flows.gpu import gpu_limit_name

    assert gpu_limit_name(0, "GPU-Box_1.example.com") == "vitrine-gpu-gpu-box-1-example-com-0"
    assert gpu_limit_name("GPU-5e0c", "h") == "vitrine-gpu-h-gpu-5e0c"
    with pytest.raises(ValueError):
        gpu_limit_name("", "h")


# -- worker and deploy commands ----------------------------------------------------------------------------
def _worker_args(*argv):
    from flows.cli import build_parser

    return build_parser().parse_args(["worker", *argv])


def test_worker_runs_one_prefect_worker_per_gpu(monkeypatch):
    import socket

    from flows.cli.ops import worker_commands
    from flows.gpu import gpu_limit_name

    monkeypatch.setenv("VITRINE_GPU_LIMIT", "inherited-must-not-leak")
    cmds = worker_commands(_worker_args("--pool", "p", "--gpu", "0,1", "--gpu", "3"))
    host = socket.gethostname()
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in cmds] == ["0", "1", "3"]
    assert [env["VITRINE_GPU_LIMIT"] for _, env in cmds] == [gpu_limit_name(g) for g in "013"]
    assert [env["VITRINE_WORKER_NAME"] for _, env in cmds] == [f"{host}-gpu{g}" for g in "013"]
    argv, env = cmds[0]
    assert argv[1:] == ["-m", "prefect", "worker", "start", "--pool", "p", "--type", "process", "--limit", "1",
                        "--name", f"{host}-gpu0"]
    assert argv[0] == sys.executable and env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]
    ((_, cpu_env),) = worker_commands(_worker_args("--pool", "d", "--no-gpu", "--name", "dispatch"))
    assert "VITRINE_GPU_LIMIT" not in cpu_env and cpu_env["CUDA_VISIBLE_DEVICES"] == ""
    assert cpu_env["VITRINE_WORKER_NAME"] == "dispatch"
    with pytest.raises(ValueError, match="--no-gpu"):
        worker_commands(_worker_args("--pool", "p"))
    with pytest.raises(ValueError, match="listed twice"):
        worker_commands(_worker_args("--gpu", "0,0"))


def test_deploy_without_a_server_or_folder_is_a_usage_error(monkeypatch, capsys):
    import flows.cli.ops as ops
    from flows.cli import main

    monkeypatch.setattr(ops, "_api_url", lambda: None)
    assert main(["deploy", "--name", "a", "--products", "p", "--cron", "0 2 * * *"]) == 2
    assert "PREFECT_API_URL" in capsys.readouterr().err
    assert main(["deploy", "--products", "p"]) == 2
    assert "--name and --products" in capsys.readouterr().err
    assert main(["deploy", "--name", "a", "--products", "p", "--cron", "every night"]) == 2
    assert "--cron: Value error" in capsys.readouterr().err


# -- observability ----------------------------------------------------------------------------------------
def test_sku_rows_link_entries_for_paths_and_urls(tmp_path):
    from flows.observability import sku_rows

    report = {"runner": {"worker": "gpu-a"}, "entries": [
        {"sku": "a", "status": "ok", "outputs": ["main.png"], "error": None, "reason": None, "seconds": 1.5},
        {"sku": "b", "status": "failed", "outputs": [], "error": "front.jpg: broken", "reason": None},
        {"sku": "c", "status": "skipped", "outputs": ["main.png"], "error": None, "reason": "unchanged"},
    ]}
    rows = sku_rows(report, str(tmp_path))
    assert rows[0] == {"sku": "a", "status": "ok", "outputs": 1, "entry": (tmp_path / "a" / "manifest.json").as_uri(),
                       "error_or_reason": "", "seconds": 1.5, "worker": "gpu-a"}
    assert rows[1]["entry"] == "" and rows[1]["error_or_reason"] == "front.jpg: broken"
    assert rows[2]["error_or_reason"] == "unchanged"
    assert sku_rows(report, "s3://bkt/cat/")[0]["entry"] == "s3://bkt/cat/a/manifest.json"


# -- idempotent per-SKU writes ------------------------------------------------------------------------------
def test_leftover_cleanup_never_touches_another_skus_staging(tmp_path):
    from pipelines.catalog.store import STAGING_DIR, TRASH_DIR, clean_leftovers

    staging, trash = tmp_path / STAGING_DIR, tmp_path / TRASH_DIR
    mine = [staging / "shirt.123.0a1b2c3d", trash / "shirt.deadbeef"]
    theirs = [staging / "shirt.v2.456.0a1b2c3d", trash / "shirt.v2.deadbeef", staging / "shirt.1.9.abcdef01"]
    for d in mine + theirs:
        (d / "work").mkdir(parents=True)
    clean_leftovers(tmp_path, "shirt")
    assert [d.exists() for d in mine] == [False, False]
    assert all(d.exists() for d in theirs)


# -- catalog at an fsspec URL ---------------------------------------------------------------------------------
@pytest.fixture()
def tee_product(tmp_path, drawn_products):
    from pipelines.imageio import save_image
    from pipelines.product import load_product

    d = tmp_path / "products" / "tee"
    d.mkdir(parents=True)
    save_image(d / "front.png", drawn_products["tee"][0])  # 512 px: the 2000 px main within the upscale limit
    (d / "product.yaml").write_text("backgrounds: [white]\n")
    return load_product(d, root=d.parent)


def test_url_catalog_publishes_manifest_last_and_skips_unchanged(tmp_path, monkeypatch, tee_product):
    from pipelines.engines.registry import get_engine
    from pipelines.catalog.manifest import read_manifest, validate_manifest
    from pipelines.catalog.publish import find_catalog_report, process_sku_at_url, write_catalog_report
    from pipelines.settings import load_settings

    monkeypatch.setenv("VITRINE_SCRATCH", str(tmp_path / "scratch"))
    settings = load_settings()  # the environment, as an entry point reads it
    remote = tmp_path / "bucket" / "catalog"
    url = remote.as_uri()  # file:///...: the same code path as s3://, through fsspec
    engine = get_engine("classic")
    first = process_sku_at_url(tee_product, url, engine, settings=settings)
    assert first.status == "ok" and first.manifest == f"{url}/tee/manifest.json"
    manifest = read_manifest(remote / "tee" / "manifest.json")
    validate_manifest(manifest)
    for o in manifest["outputs"]:
        assert (remote / "tee" / o["file"]).is_file()
    assert not any((tmp_path / "scratch").rglob("manifest.json"))  # scratch entry removed once published

    (remote / "tee" / "work" / "stale-from-an-old-render.png").write_bytes(b"x")
    again = process_sku_at_url(tee_product, url, engine, settings=settings)
    assert (again.status, again.reason) == ("skipped", "unchanged")

    (remote / "tee" / "main.png").unlink()  # an incomplete entry is rendered and published again
    third = process_sku_at_url(tee_product, url, engine, settings=settings)
    assert third.status == "ok" and (remote / "tee" / "main.png").is_file()
    assert not (remote / "tee" / "work" / "stale-from-an-old-render.png").exists()

    report = {"run_id": "run-1", "finished_at": "2026-01-01T00:00:00+00:00", "entries": []}
    where = write_catalog_report(report, url, settings)
    assert where.startswith(url + "/_reports/") and where.endswith("-run-1.json")
    assert find_catalog_report(url, "run-1", settings) == json.loads(json.dumps(report))
    assert find_catalog_report(url, "run-2") is None


def test_url_catalog_without_its_backend_fails_the_sku_with_a_hint(tee_product):
    from pipelines.engines.registry import get_engine
    from pipelines.catalog.publish import process_sku_at_url

    res = process_sku_at_url(tee_product, "nosuchscheme://bucket/catalog", get_engine("classic"))
    assert res.status == "failed" and "nosuchscheme://bucket/catalog" in res.error


@pytest.mark.slow
def test_batch_flow_renders_into_a_url_catalog(prefect_harness, tmp_path, monkeypatch, tee_product):
    from flows.catalog_batch import catalog_batch
    from pipelines.catalog.manifest import read_manifest, validate_manifest

    monkeypatch.setenv("VITRINE_SCRATCH", str(tmp_path / "scratch"))
    remote = tmp_path / "bucket" / "catalog"
    url = remote.as_uri()
    products = str(tee_product.dir.parent)
    result = catalog_batch(products, url, engine="classic")
    assert result["counts"] == {"ok": 1, "failed": 0, "skipped": 0}
    assert result["report_path"].startswith(f"{url}/_reports/")
    validate_manifest(read_manifest(remote / "tee" / "manifest.json"))
    report = json.loads(Path(result["report_path"].removeprefix("file://")).read_text())
    assert report["catalog_dir"] == url and report["entries"][0]["manifest"] == f"{url}/tee/manifest.json"
    assert not (Path.cwd() / "file:").exists()
    again = catalog_batch(products, url, engine="classic")
    assert again["counts"] == {"ok": 0, "failed": 0, "skipped": 1}
