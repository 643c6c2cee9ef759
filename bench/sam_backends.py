"""SAM ViT-B image embedding on this machine: transformers ``SamModel`` (SDPA and eager attention) side by side
with ``segment_anything`` (issue 13, finding 10). Random weights at the published ViT-B config (timing does not
depend on the values); one 1024 px image; the processor's pre-processing timed apart.

    PYTHONPATH=. .venv/bin/python bench/sam_backends.py [--repeats 2] [--threads N]

Prints one line per backend: seconds per embedding (best of ``--repeats``) and the ratio to segment_anything.
"""

from __future__ import annotations

import argparse
import time


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    import numpy as np
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    image = np.random.default_rng(0).integers(0, 255, (1024, 768, 3), dtype=np.uint8)
    results: dict[str, float] = {}

    from transformers import SamConfig, SamImageProcessor, SamModel

    proc = SamImageProcessor()
    results["transformers processor (resize+normalise+pad)"] = best_of(
        lambda: proc(images=image, return_tensors="pt"), args.repeats)
    pixels = proc(images=image, return_tensors="pt")["pixel_values"]
    for impl in ("sdpa", "eager"):
        torch.manual_seed(0)
        cfg = SamConfig()
        cfg._attn_implementation = impl
        model = SamModel(cfg).eval()
        model.set_attn_implementation(impl) if hasattr(model, "set_attn_implementation") else None

        def run(model=model):
            with torch.inference_mode():
                model.get_image_embeddings(pixels)

        run()
        results[f"transformers SamModel ({impl})"] = best_of(run, args.repeats)
        del model

    try:
        from segment_anything import build_sam_vit_b
    except ImportError:
        print("segment_anything not installed: pip install segment-anything==1.0")
    else:
        torch.manual_seed(0)
        sam = build_sam_vit_b().eval()
        x = torch.randn(1, 3, 1024, 1024)

        def run_sa():
            with torch.inference_mode():
                sam.image_encoder(x)

        run_sa()
        results["segment_anything image_encoder"] = best_of(run_sa, args.repeats)

    ref = results.get("segment_anything image_encoder")
    for name, sec in results.items():
        ratio = f"{sec / ref:5.2f}x segment_anything" if ref else ""
        print(f"{name:<50} {sec:8.2f} s  {ratio}")


if __name__ == "__main__":
    main()
