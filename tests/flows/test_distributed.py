"""Operations end to end: a real Prefect server, process work pools, `vitrine deploy` and `vitrine worker`.

1. A cron schedule fires a ``catalog-scatter`` run that shards a products folder over two GPU workers
   (``CUDA_VISIBLE_DEVICES`` 0 and 1): every SKU rendered exactly once, both workers used, manifests
   valid, artifacts, per-SKU logs and GPU concurrency slots in place.
2. A worker killed with SIGKILL mid-batch: re-running finishes the rest without redoing or corrupting
   the SKUs that were finished.
3. ``prefect.yaml`` deploys with ``prefect --no-prompt deploy --all``.
4. ``vitrine serve``: each flow run is a new process (the reason models reload per run).

Everything listens on 127.0.0.1; every wait is bounded; every process is stopped by its PID.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.distributed

REPO = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 240  # migrations on a fresh database take ~25 s on 2 idle cores
WORKER_START_TIMEOUT_S = 120
RUN_TIMEOUT_S = 300
STOP_GRACE_S = 20


# -- processes ------------------------------------------------------------------------------------------
class Proc:
    """A child process in its own session with its output in a log file; `stop` ends it and its children by PID."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log = log_dir / f"{name}.log"
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.popen.pid

    def tree(self) -> list:
        import psutil

        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill9(self) -> list[int]:
        """SIGKILL the process and every descendant, each by its PID (a machine dying); returns the PIDs."""
        import psutil

        procs = self.tree()
        for p in procs:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        psutil.wait_procs(procs, timeout=STOP_GRACE_S)
        self.popen.wait(timeout=STOP_GRACE_S)
        return [p.pid for p in procs]

    def stop(self) -> None:
        """SIGTERM the process and its descendants by PID; SIGKILL what is left after a bounded wait."""
        import psutil

        procs = self.tree()
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _gone, alive = psutil.wait_procs(procs, timeout=STOP_GRACE_S)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=STOP_GRACE_S)
        try:
            self.popen.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass

    def tail(self, n: int = 40) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return f"--- {self.name} (pid {self.pid}) ---\n" + "\n".join(lines[-n:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, env: dict[str, str], root: Path):
        self.url, self.env, self.root = url, env, root
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str]) -> Proc:
        proc = Proc(name, argv, self.env, self.root)
        self.procs.append(proc)
        return proc

    def vitrine(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        res = subprocess.run([sys.executable, "-m", "flows.cli", *args], env=self.env, cwd=REPO, timeout=timeout,
                             capture_output=True, text=True)
        assert res.returncode == 0, f"vitrine {' '.join(args)}: {res.returncode}\n{res.stdout}\n{res.stderr}"
        return res

    def worker(self, name: str, pool: str, *flags: str) -> Proc:
        proc = self.start(name, [sys.executable, "-m", "flows.cli", "worker", "--pool", pool, "--name", name, *flags])
        self.wait_for(lambda: "started!" in proc.log.read_text(errors="replace") or proc.popen.poll() is not None,
                      WORKER_START_TIMEOUT_S, f"worker {name} to start")
        assert proc.popen.poll() is None, self.tails()
        return proc

    def tails(self) -> str:
        return "\n".join(p.tail() for p in self.procs)

    def wait_for(self, predicate, timeout_s: float, what: str, poll_s: float = 0.5):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(poll_s)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{self.tails()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`prefect server start` on 127.0.0.1 (a free port, PREFECT_HOME in a temporary folder)."""
    import httpx
    from prefect.settings import PREFECT_API_URL, temporary_settings

    root = tmp_path_factory.mktemp("prefect")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(root / "home"),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_LOCAL_STORAGE_PATH": str(root / "results"),  # shared result storage of all processes
        "PYTHONUNBUFFERED": "1",
        "VITRINE_GPU_GUARD": "always",  # the classic engine's calls take the GPU slots too, to test them
    })
    srv = Server(url, env, root)
    try:
        proc = srv.start("server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                    "--port", str(port)])

        def healthy():
            if proc.popen.poll() is not None:
                raise AssertionError(f"prefect server exited with {proc.popen.returncode}\n{proc.tail()}")
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        t0 = time.monotonic()
        srv.wait_for(healthy, SERVER_START_TIMEOUT_S, "the Prefect server")
        print(f"prefect server up in {time.monotonic() - t0:.1f} s on port {port}")
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield srv
    finally:
        for p in reversed(srv.procs):
            p.stop()


# -- helpers --------------------------------------------------------------------------------------------
def make_products(root: Path, n: int, *, broken: bool = False) -> list[str]:
    """``n`` small drawn tees (512 px: the 2000 px main may enlarge at most 6x); optionally one unreadable SKU."""
    from pipelines.imageio import save_image
    from pipelines.samples import draw_tee

    names = []
    for i in range(n):
        d = root / f"tee-{i:02d}"
        d.mkdir(parents=True)
        save_image(d / "front.png", draw_tee(512, color=(20 + 40 * i, 44, 92), seed=i)[0])
        (d / "product.yaml").write_text("backgrounds: [white]\n")
        names.append(d.name)
    if broken:
        d = root / "zz-broken"
        d.mkdir()
        (d / "front.jpg").write_bytes(b"not a jpeg")
        names.append(d.name)
    return names


def flow_runs(flow: str, deployment: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])),
                                     deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])))
    return sorted(runs, key=lambda r: r.expected_start_time or r.created)


def read_run(run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def shard_report(catalog: Path, run_id) -> dict:
    from flows.sharding import find_shard_report

    rep = find_shard_report(catalog, str(run_id))
    assert rep is not None, f"no report for flow run {run_id} in {catalog / '_reports'}"
    return rep


def entry_digest(sku_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(sku_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(sku_dir.rglob("*")) if p.is_file()}


def assert_entries_valid(catalog: Path, skus: list[str]) -> None:
    from pipelines.catalog.verify import verify_entry
    from pipelines.catalog.manifest import read_manifest, validate_manifest

    for sku in skus:
        manifest = read_manifest(catalog / sku / "manifest.json")
        validate_manifest(manifest, path=catalog / sku / "manifest.json")
        assert manifest["status"] == "ok" and manifest["sku"] == sku
        for o in manifest["outputs"]:
            assert hashlib.sha256((catalog / sku / o["file"]).read_bytes()).hexdigest() == o["sha256"], o["file"]
        assert all(r["identical_fraction"] == 1.0 for r in verify_entry(catalog / sku)), sku
    leftovers = [p for sub in (".staging", ".trash") if (catalog / sub).is_dir() for p in (catalog / sub).iterdir()]
    assert not leftovers, leftovers


def concurrency_events(server: Server, limit_name: str) -> collections.Counter:
    """Counts of ``prefect.concurrency-limit.*`` events of one global limit."""
    import httpx

    body = {"filter": {"event": {"prefix": ["prefect.concurrency-limit."]},
                       "resource": {"id_prefix": ["prefect.concurrency-limit."]},
                       "occurred": {"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}}, "limit": 50}
    counts: collections.Counter = collections.Counter()
    page = httpx.post(f"{server.url}/events/filter", json=body, timeout=30).json()
    for _ in range(100):  # bounded pagination
        for e in page["events"]:
            if e["resource"].get("prefect.resource.name") == limit_name:
                counts[e["event"].rsplit(".", 1)[-1]] += 1
        if not page.get("next_page"):
            break
        page = httpx.get(page["next_page"], timeout=30).json()
    return counts


# -- 1. the scheduled path, sharded over two GPU workers -------------------------------------------------
def test_cron_schedule_shards_a_folder_over_two_gpu_workers(server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    from flows.gpu import gpu_limit_name

    products, catalog = tmp_path / "products", tmp_path / "catalog"
    skus = make_products(products, 4, broken=True)
    good = [s for s in skus if s != "zz-broken"]
    # A daily cron at the next minute at least 20 s away: the server's scheduler creates the run.
    fire = (datetime.now(UTC) + timedelta(seconds=20 + 59)).replace(second=0, microsecond=0)
    cron = f"{fire.minute} {fire.hour} * * *"
    out = server.vitrine("deploy", "--name", "nightly", "--products", str(products), "--catalog", str(catalog),
                         "--cron", cron, "--timezone", "UTC", "--engine", "classic", "--shard-size", "3").stdout
    assert "catalog-batch/nightly\tpool=vitrine-gpu\ton demand" in out
    assert f"catalog-scatter/nightly\tpool=vitrine-dispatch\tcron '{cron}' UTC" in out

    server.worker("dispatch", "vitrine-dispatch", "--no-gpu", "--limit", "4")
    server.worker("gpu-a", "vitrine-gpu", "--gpu", "0")
    server.worker("gpu-b", "vitrine-gpu", "--gpu", "1")

    # 1. The scheduled scatter run fires and finishes.
    def scatter_done():
        runs = flow_runs("catalog-scatter", "nightly")
        return runs and runs[0].state.is_final() and runs[0]

    wait_s = (fire - datetime.now(UTC)).total_seconds() + RUN_TIMEOUT_S
    scatter = server.wait_for(scatter_done, wait_s, "the scheduled catalog-scatter run", poll_s=1)
    assert scatter.state.is_completed(), f"{scatter.state}\n{server.tails()}"
    assert scatter.auto_scheduled, "the run was not created by the scheduler"
    assert scatter.expected_start_time == fire

    # 2. Two shard runs, one per GPU worker, each SKU in exactly one of them.
    shards = flow_runs("catalog-batch", "nightly")
    assert len(shards) == 2 and all(r.state.is_completed() for r in shards), [r.state for r in shards]
    assert all("vitrine-shard" in r.tags and r.parent_task_run_id for r in shards)
    reports = [shard_report(catalog, r.id) for r in shards]
    assert {rep["runner"]["worker"] for rep in reports} == {"gpu-a", "gpu-b"}, "both workers should be used"
    assert {rep["runner"]["cuda_visible_devices"] for rep in reports} == {"0", "1"}
    seen = collections.Counter(e["sku"] for rep in reports for e in rep["entries"])
    assert seen == collections.Counter(skus), seen
    status = {e["sku"]: e["status"] for rep in reports for e in rep["entries"]}
    assert status == {**{s: "ok" for s in good}, "zz-broken": "failed"}
    assert sorted(p.name for p in catalog.iterdir() if not p.name.startswith(("_", "."))) == good
    assert_entries_valid(catalog, good)

    # 3. The folder's report, from the scatter run.
    folder = shard_report(catalog, scatter.id)
    assert folder["counts"] == {"ok": 4, "failed": 1, "skipped": 0}
    assert {s["state"] for s in folder["shards"]} == {"Completed"} and len(folder["shards"]) == 2

    # 4. Artifacts: a SKU table per shard (links to the entries) and one for the folder; logs per SKU.
    with get_client(sync_client=True) as client:
        for run, rep in zip(shards, reports):
            arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
                any_=[run.id])))
            tables = [a for a in arts if a.key == "catalog-batch-skus"]
            assert len(tables) == 1, [a.key for a in arts]
            rows = tables[0].data if isinstance(tables[0].data, list) else json.loads(tables[0].data)
            assert sorted(r["sku"] for r in rows) == sorted(e["sku"] for e in rep["entries"])
            for r in rows:
                if r["status"] == "ok":
                    assert r["entry"] == (catalog / r["sku"] / "manifest.json").as_uri()
                else:
                    assert r["entry"] == "" and "front.jpg" in r["error_or_reason"]
            messages = [log.message for log in client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])), limit=200)]
            for e in rep["entries"]:
                if e["status"] == "ok":
                    assert any(m.startswith(f"SKU {e['sku']}: ok") for m in messages), e["sku"]
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[scatter.id])))
        assert {"catalog-scatter-skus", "catalog-scatter-report"} <= {a.key for a in arts}

        # 5. Every model call held its GPU's slot, all released; limits of 1 slot. Per SKU (one output): the
        #    subject, the controls, and the composition (background + seam, one guarded call: `GUARDED_METHODS`).
        for gpu in ("0", "1"):
            name = gpu_limit_name(gpu)
            limit = client.read_global_concurrency_limit_by_name(name)
            assert limit.limit == 1 and limit.active_slots == 0, limit
            counts = server.wait_for(
                lambda name=name: (c := concurrency_events(server, name))["acquired"] >= 3
                and c["acquired"] == c["released"] and c, 60, f"the concurrency events of {name}", poll_s=2)
            assert counts["acquired"] % 3 == 0, counts


# -- 2. SIGKILL mid-batch, then resume ------------------------------------------------------------------
def test_sigkill_mid_batch_then_rerun_finishes_without_redoing(server, tmp_path):
    from prefect.deployments import run_deployment

    from flows.gpu import gpu_limit_name

    products, catalog = tmp_path / "products", tmp_path / "catalog"
    skus = make_products(products, 6)
    server.vitrine("deploy", "--name", "resume", "--products", str(products), "--catalog", str(catalog),
                   "--engine", "classic", "--pool", "vitrine-resume", "--crash-after", "0")
    doomed = server.worker("resume-a", "vitrine-resume", "--gpu", "0")
    first = run_deployment("catalog-batch/resume", timeout=0)

    # 1. Kill the worker and its flow-run process (SIGKILL, by PID) right after the first SKU is committed.
    def committed():
        state = read_run(first.id).state
        assert not state.is_final(), f"the batch finished before it could be killed: {state}"
        return [s for s in skus if (catalog / s / "manifest.json").is_file()]

    server.wait_for(committed, RUN_TIMEOUT_S, "the first committed SKU", poll_s=0.05)
    killed = doomed.kill9()
    assert len(killed) >= 2, f"expected the worker and its flow-run process, got {killed}"
    done = [s for s in skus if (catalog / s / "manifest.json").is_file()]
    assert 1 <= len(done) < len(skus), done
    before = {s: entry_digest(catalog / s) for s in done}
    assert read_run(first.id).state.is_running(), "a SIGKILLed run stays Running until marked Crashed"

    # 2. Re-run the same deployment on a fresh worker (GPU 0's slot may still be leased by the dead run).
    server.worker("resume-b", "vitrine-resume", "--gpu", "1")
    second = run_deployment("catalog-batch/resume", timeout=0)
    server.wait_for(lambda: read_run(second.id).state.is_final(), RUN_TIMEOUT_S, "the re-run", poll_s=1)
    assert read_run(second.id).state.is_completed(), server.tails()

    # 3. The finished SKUs were skipped and are byte-identical; the rest were rendered; all entries valid.
    rep = shard_report(catalog, second.id)
    status = {e["sku"]: (e["status"], e.get("reason")) for e in rep["entries"]}
    assert status == {s: ("skipped", "unchanged") if s in done else ("ok", None) for s in skus}, status
    assert {s: entry_digest(catalog / s) for s in done} == before
    assert_entries_valid(catalog, skus)
    assert sorted(p.name for p in catalog.iterdir() if not p.name.startswith(("_", "."))) == skus

    # 4. The dead run's GPU slot is given back when its lease expires.
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        server.wait_for(lambda: client.read_global_concurrency_limit_by_name(gpu_limit_name("0")).active_slots == 0,
                        180, "GPU 0's leased slot to expire", poll_s=2)


# -- 3. prefect.yaml, Prefect's own deployment file ------------------------------------------------------
def test_prefect_yaml_deploys_with_the_prefect_cli(server):
    from prefect.client.orchestration import get_client

    from flows.deploy import ensure_process_pool

    for pool in ("vitrine-gpu", "vitrine-dispatch"):
        ensure_process_pool(pool)
    res = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=REPO, env=server.env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    data = __import__("yaml").safe_load((REPO / "prefect.yaml").read_text())
    with get_client(sync_client=True) as client:
        for dep in data["deployments"]:
            flow = "catalog-scatter" if "sharding" in dep["entrypoint"] else "catalog-batch"
            got = client.read_deployment_by_name(f"{flow}/{dep['name']}")
            assert got.parameters == dep["parameters"] and got.work_pool_name == dep["work_pool"]["name"]
            assert [s.schedule.cron for s in got.schedules] == [s["cron"] for s in dep["schedules"]]
            assert got.pull_steps == data["pull"]
            client.delete_deployment(got.id)  # and its scheduled runs: nothing here should fire later


# -- 4. serve on one machine -------------------------------------------------------------------------------
def test_serve_runs_each_flow_run_in_a_new_process(server, tmp_path):
    """`vitrine serve`: no pool, no worker. Each run is a new child process (so models reload per run)."""
    from prefect.deployments import run_deployment

    products, catalog = tmp_path / "products", tmp_path / "catalog"
    (sku,) = make_products(products, 1)
    serving = server.start("serve", [sys.executable, "-m", "flows.cli", "serve", "--name", "served", "--products",
                                     str(products), "--catalog", str(catalog), "--engine", "classic"])
    server.wait_for(lambda: "catalog-batch/served" in serving.log.read_text(errors="replace")
                    or serving.popen.poll() is not None, WORKER_START_TIMEOUT_S, "vitrine serve to start")
    assert serving.popen.poll() is None, serving.tail()
    pids, statuses = [], []
    for _ in range(2):
        run = run_deployment("catalog-batch/served", timeout=0)
        server.wait_for(lambda run=run: read_run(run.id).state.is_final(), RUN_TIMEOUT_S, "a served run", poll_s=1)
        assert read_run(run.id).state.is_completed(), serving.tail()
        rep = shard_report(catalog, run.id)
        pids.append(rep["runner"]["pid"])
        statuses.append(rep["entries"][0]["status"])
    assert statuses == ["ok", "skipped"]
    assert len({serving.pid, *pids}) == 3, f"serve {serving.pid}, runs {pids}: expected a new process per run"
    assert_entries_valid(catalog, [sku])
