"""Every notebook in notebooks/ runs top to bottom on the classic engine, and is committed executed.

The notebooks run with nbclient on the ``python3`` kernel. jupyter_client starts a kernel spec whose
command is ``python`` with the interpreter running the tests (``sys.executable``), so the kernel is
this virtual environment's Python: no kernel needs registering. Each notebook runs in a temporary
working folder and writes only to temporary folders.

``VITRINE_UPDATE_NOTEBOOKS=1 pytest -m notebooks tests/test_notebooks.py`` writes the fresh outputs back.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.notebooks

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
KERNEL = "python3"
CELL_TIMEOUT_S = 240


def _client(nb, workdir: Path):
    from nbclient import NotebookClient

    return NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL, record_timing=False,
                          resources={"metadata": {"path": str(workdir)}})


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_well_formed_and_committed_executed(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", "exactly one code cell tagged 'parameters'"
    assert code.index(tagged[0]) == 0, "the parameters cell is the first code cell"
    assert any("from pipelines" in c.source or "import pipelines" in c.source for c in code)
    assert nb.metadata.kernelspec.name == KERNEL
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), "saved after one clean top-to-bottom run"
    assert sum(len(c.outputs) for c in code) > 0, "saved with outputs"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    _client(nb, tmp_path).execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert not list(tmp_path.iterdir()), "a notebook must not write into its working folder"
    if os.environ.get("VITRINE_UPDATE_NOTEBOOKS"):
        nbformat.write(nb, path)


def test_kernel_is_this_python(tmp_path):
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell("import sys, pipelines; print(sys.executable)")])
    _client(nb, tmp_path).execute()
    assert nb.cells[0].outputs[0]["text"].strip() == sys.executable


def _inject(nb, source: str):
    """Insert an ``injected-parameters`` cell right after the ``parameters`` cell (papermill's convention)."""
    from nbformat.v4 import new_code_cell

    idx = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(idx + 1, new_code_cell(source, metadata={"tags": ["injected-parameters"]}))


def _text(nb) -> str:
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            out.append(o.get("text", "") if isinstance(o.get("text", ""), str) else "")
            out.append(str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def test_injected_parameters_take_effect(tmp_path):
    """An analyst (or papermill) overriding the tagged parameters changes what the notebook does."""
    import nbformat

    path = next(p for p in NOTEBOOKS if p.stem.startswith("01_"))
    nb = nbformat.read(path, as_version=4)
    default_text = _text(nb)
    assert "astronaut" in default_text  # the committed run used the default samples
    _inject(nb, 'samples = ["tote-canvas"]\nprompts = ["garment"]\nthresholds = [0.5]')
    _client(nb, tmp_path).execute()
    text = _text(nb)
    assert "tote-canvas" in text and "astronaut" not in text
