"""What a new process per flow run costs: imports, model loading and first-call warm-up (docs/operations.md).

Prefect 3 runs every flow run in a fresh process, whether a process worker or ``serve`` runs it, so a
flow run's models load once and are reused for its SKUs, and the next flow run loads them again. This
measures that reload cost, each in a fresh child process:

- ``spawn``: a bare Python interpreter;
- ``classic``: importing the batch flow (Prefect + Vitrine), building the classic engine, then the first
  and a second render of a product shot (1024 px tee) and of an on-model photo (mediapipe models);
- ``diffusers`` (when ``vitrine dev tiny-models`` can build the tiny FLUX family): importing torch and
  diffusers, ``FluxPipeline.from_pretrained`` of the tiny FLUX.1-schnell folder, the first and a
  second 2-step generation;
- ``cache``: the per-process engine cache (``worker_engine``) on a hit;
- ``gpu-slot`` (only with ``PREFECT_API_URL`` set): one acquire + release of a global concurrency
  limit, the price of `flows.gpu.GpuGuardedEngine` per model call.

Usage: ``python bench/reload_cost.py [--repeat 3] [--out bench/results/reload_cost.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _child_classic() -> dict:
    t0 = time.perf_counter()
    import flows.catalog_batch as cb  # noqa: F401  (Prefect + the pipelines, as a flow-run process does)
    from pipelines.settings import VitrineSettings

    t_import = time.perf_counter() - t0
    from pipelines.catalog.render import process_sku
    from pipelines.imageio import save_image
    from pipelines.product import load_product
    from pipelines.samples import astronaut, draw_tee

    root = Path(tempfile.mkdtemp(prefix="reload-"))
    for sku, rgb in (("tee", draw_tee(1024)[0]), ("person", astronaut())):
        d = root / "products" / sku
        d.mkdir(parents=True)
        save_image(d / "front.png", rgb)
        (d / "product.yaml").write_text("backgrounds: [white]\n")
    t0 = time.perf_counter()
    engine = cb.worker_engine("classic", VitrineSettings())
    t_engine = time.perf_counter() - t0
    out = {"import_s": t_import, "engine_s": t_engine}
    for sku in ("tee", "person"):
        product = load_product(root / "products" / sku, root=root / "products")
        for k in (1, 2):
            t0 = time.perf_counter()
            res = process_sku(product, root / f"catalog{k}", engine)
            assert res.status == "ok", res
            out[f"{sku}_{'first' if k == 1 else 'warm'}_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(1000):
        cb.worker_engine("classic", VitrineSettings())
    out["cache_hit_us"] = (time.perf_counter() - t0) * 1000  # 1000 calls -> us per call
    return out


def _child_diffusers(model_dir: str) -> dict:
    t0 = time.perf_counter()
    import torch
    from diffusers import FluxPipeline

    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipe = FluxPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe.to(device)
    t_load = time.perf_counter() - t0
    kw = dict(prompt="a red dress", height=32, width=32, num_inference_steps=2, guidance_scale=0.0,
              max_sequence_length=48, output_type="np")
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        with torch.no_grad():
            pipe(**kw, generator=torch.Generator("cpu").manual_seed(0))
        times.append(time.perf_counter() - t0)
    return {"import_s": t_import, "load_s": t_load, "first_s": times[0], "warm_s": times[1], "device": device}


def _run_child(mode: str, *extra: str) -> dict:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, __file__, "--child", mode, *extra], capture_output=True, text=True,
                         cwd=REPO, timeout=600, env={**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{res.stderr[-3000:]}")
    data = json.loads(res.stdout.strip().splitlines()[-1])
    data["process_wall_s"] = wall
    return data


def _gpu_slot_cost(n: int = 20) -> float | None:
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return None
    from prefect.concurrency.sync import concurrency

    from flows.cli.ops import ensure_gpu_limit

    ensure_gpu_limit("vitrine-bench-slot", 1)
    with concurrency("vitrine-bench-slot", occupy=1, lease_duration=60):  # warm the client
        pass
    t0 = time.perf_counter()
    for _ in range(n):
        with concurrency("vitrine-bench-slot", occupy=1, lease_duration=60):
            pass
    return (time.perf_counter() - t0) / n


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes per measurement (median reported)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "reload_cost.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "classic":
        print(json.dumps(_child_classic()))
        return 0
    if args.child == "diffusers":
        print(json.dumps(_child_diffusers(args.model_dir)))
        return 0
    if args.child == "spawn":
        print(json.dumps({}))
        return 0

    results: dict = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "repeat": args.repeat}
    spawn = [_run_child("spawn") for _ in range(args.repeat)]
    results["spawn_s"] = _median(spawn, "process_wall_s")
    classic = [_run_child("classic") for _ in range(args.repeat)]
    results["classic"] = {k: round(_median(classic, k), 4) for k in classic[0] if isinstance(classic[0][k], float)}
    c = results["classic"]
    results["classic"]["reload_s"] = round(
        c["import_s"] + c["engine_s"] + (c["tee_first_s"] - c["tee_warm_s"]) + (c["person_first_s"] - c["person_warm_s"]), 3)

    with tempfile.TemporaryDirectory() as models:
        try:
            from pipelines.models.generation_models import FLUX_SCHNELL
            from pipelines.dev_models.tiny import build_tiny_models

            build_tiny_models(models, ["flux"])
            model_dir = str(Path(models) / FLUX_SCHNELL)
        except Exception as exc:  # the tiny FLUX family is optional here
            results["diffusers"] = {"skipped": f"{type(exc).__name__}: {exc}"}
        else:
            rows = [_run_child("diffusers", "--model-dir", model_dir) for _ in range(args.repeat)]
            d = {k: round(_median(rows, k), 4) for k in rows[0] if isinstance(rows[0][k], float)}
            d["device"] = rows[0]["device"]
            d["reload_s"] = round(d["import_s"] + d["load_s"] + d["first_s"] - d["warm_s"], 3)
            results["diffusers"] = d
    slot = _gpu_slot_cost()
    results["gpu_slot_s"] = round(slot, 4) if slot is not None else None

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
