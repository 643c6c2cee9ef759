"""Reliability figures: inputs tried, crash trials survived, SKUs lost — from the tests that prove them.

Usage::

    python bench/reliability.py [--trials 30] [--quick] [--out bench/results/reliability.json]

Runs tests/reliability/test_reliability_inputs.py, test_reliability_crash.py, test_reliability_concurrency.py,
test_security.py, test_properties.py and test_reliability_round2_store.py with pytest (the ``slow`` ones too, unless ``--quick``). The
tests write their figures to the JSON file named by ``$VITRINE_RELIABILITY_FIGURES``; this script sets
it, then prints the summary that docs/reliability.md reports and exits with pytest's status. Nothing
here measures on its own: a figure exists only if the test behind it passed its assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_FILES = [
    "tests/reliability/test_reliability_inputs.py",
    "tests/reliability/test_reliability_crash.py",
    "tests/reliability/test_reliability_concurrency.py",
    "tests/reliability/test_security.py",
    "tests/core/test_properties.py",
    "tests/reliability/test_reliability_round2_store.py",  # issue 14: the store's findings
]


def summarise(figures: dict) -> list[str]:
    """Markdown lines: one per figure, the way docs/reliability.md shows them."""
    lines = []
    inputs = figures.get("inputs")
    if inputs:
        lines.append(f"- Bad-input corpus: {inputs['inputs_tried']} inputs tried, {inputs['correct_results']} "
                     f"correct results, {inputs['clear_errors']} clear errors naming the file (and key), "
                     f"{inputs['unclear_or_wrong']} unclear or wrong; good SKUs completed: "
                     f"{inputs['good_skus_completed']}/{inputs['correct_results']}.")
    cli = figures.get("inputs_cli")
    if cli:
        lines.append(f"- `vitrine run` over the mixed folder: exit code {cli['exit_code']}, "
                     f"{cli['failures_listed']} failures listed, {cli['good_skus_completed']} good SKUs complete.")
    for key, label in (("crash", "SIGKILL trials"), ("crash_quick", "SIGKILL trials (quick set)")):
        crash = figures.get(key)
        if crash:
            lines.append(f"- {label}: {crash['survived']}/{crash['trials']} survived, SKUs lost = "
                         f"{crash['skus_lost']}, finished SKUs redone = {crash['finished_skus_redone']}; "
                         f"{crash['kills_mid_write']} kills landed while a SKU was being written "
                         f"({crash['kills_mid_write_over_an_old_entry']} of them over an existing entry); "
                         f"{crash['skus_per_trial']} SKUs per trial, batch {crash['batch_seconds']} s, "
                         f"seed {crash['seed']}.")
    for key in ("concurrency_same_order", "concurrency_reversed_order"):
        c = figures.get(key)
        if c:
            lines.append(f"- Two workers at once ({key.split('_')[1]} order): {c['skus']} SKUs, "
                         f"{c['written_by_A']} written by A, {c['written_by_B']} by B, "
                         f"{c['written_twice']} written twice.")
    c = figures.get("concurrency_cli")
    if c:
        lines.append(f"- Two `vitrine run` at once: {c['skus']} SKUs, ok per run {c['ok_per_run']}, "
                     f"written twice {c['written_twice']}.")
    lines += _round2_lines(figures)
    return lines


def _round2_lines(figures: dict) -> list[str]:
    """Issue 14's store findings (tests/reliability/test_reliability_round2_store.py)."""
    lines = []
    if c := figures.get("round2_overlap"):
        lines.append(f"- Overlapping products/catalog layouts refused: {c['layouts_refused']}, files lost {c['files_lost']}.")
    if c := figures.get("round2_journal"):
        lines.append(f"- Journal: line terminators tried {c['line_terminators_tried']}, events lost {c['events_lost']}.")
    if c := figures.get("round2_server"):
        lines.append(f"- Review server: {c['stalled_connections']} stalled connections, at most "
                     f"{c['threads_held_max']} threads held, {c['refused_503']} answered 503.")
    if c := figures.get("round2_edit_kills"):
        lines.append(f"- Edit SIGKILL trials: {c['trials']}, entries broken {c['broken']}, edits applied twice "
                     f"{c['applied_twice']}.")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30, help="SIGKILL trials of the slow crash test (>= 20)")
    parser.add_argument("--quick", action="store_true", help="skip the slow tests (CLI runs, many trials)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "reliability.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        figures_path = Path(tmp) / "figures.json"
        env = {**os.environ, "VITRINE_RELIABILITY_FIGURES": str(figures_path),
               "VITRINE_CRASH_TRIALS": str(args.trials)}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TEST_FILES]
        if args.quick:
            cmd += ["-m", "not slow"]
        start = time.perf_counter()
        rc = subprocess.run(cmd, cwd=REPO, env=env).returncode
        seconds = time.perf_counter() - start
        figures = json.loads(figures_path.read_text()) if figures_path.is_file() else {}

    figures["run"] = {"pytest_exit_code": rc, "seconds": round(seconds, 1), "quick": args.quick,
                      "python": platform.python_version(), "machine": platform.machine(),
                      "cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print()
    print("\n".join(summarise(figures)))
    print(f"\npytest exit code {rc} in {seconds:.0f} s; figures: {args.out}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
