"""Every notebook in notebooks/ runs top to bottom on the classic engine, and is committed executed.

The notebooks run with nbclient on the ``python3`` kernel. jupyter_client starts a kernel spec whose
command is ``python`` with the interpreter running the tests (``sys.executable``), so the kernel is
this virtual environment's Python: no kernel needs registering. Each notebook runs in a temporary
working folder and writes only to temporary folders.

``VITRINE_UPDATE_NOTEBOOKS=1 pytest -m notebooks tests/flows/test_notebooks.py`` writes the fresh outputs back.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.notebooks

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
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
def test_notebook_runs(path, tmp_path, monkeypatch):
    import nbformat

    monkeypatch.setenv("VITRINE_NOTEBOOK_STATIC", "1")  # headless: controls degrade to plain output

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


# -- your own photos, threshold sweeps, interactive controls -----------------------------------------------------
@pytest.fixture(scope="module")
def my_photos(tmp_path_factory, astronaut_rgb, drawn_products):
    """An analyst's folder: a product shot with its ground truth (masks/<stem>.png) and an on-model photo."""
    from pipelines.imageio import save_image, save_mask

    d = tmp_path_factory.mktemp("my-photos") / "my-tee"
    d.mkdir()
    rgb, truth = drawn_products["tee"]
    save_image(d / "flatlay.png", rgb)
    save_mask(d / "masks" / "flatlay.png", truth)
    save_image(d / "onmodel.jpg", astronaut_rgb, quality=92)
    return d


def _run(path_stem: str, params: str, workdir: Path, static: bool = True):
    """Execute a notebook with injected parameters; ``static``: controls degrade to plain output (headless)."""
    import nbformat

    nb = nbformat.read(next(p for p in NOTEBOOKS if p.stem.startswith(path_stem)), as_version=4)
    _inject(nb, params)
    workdir.mkdir()
    before = os.environ.get("VITRINE_NOTEBOOK_STATIC")
    if static:  # the kernel inherits this process's environment when it starts
        os.environ["VITRINE_NOTEBOOK_STATIC"] = "1"
    else:
        os.environ.pop("VITRINE_NOTEBOOK_STATIC", None)
    try:
        _client(nb, workdir).execute()
    finally:
        if before is None:
            os.environ.pop("VITRINE_NOTEBOOK_STATIC", None)
        else:
            os.environ["VITRINE_NOTEBOOK_STATIC"] = before
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not list(workdir.iterdir())
    return nb


def test_playground_takes_a_folder_of_your_photos(my_photos, tmp_path):
    nb = _run("01_", f"photos = {str(my_photos)!r}\nsamples = None\nprompts = ['garment']", tmp_path / "work")
    text = _text(nb)
    assert "2 photo(s): flatlay, onmodel" in text
    rows = [line for line in text.splitlines() if line.startswith(("flatlay", "onmodel"))]
    flat = [r for r in rows if r.startswith("flatlay")]
    assert flat and all(float(r.split()[-1]) > 0.95 for r in flat), "IoU against the folder's own ground truth"
    assert any(r.startswith("onmodel") and "refused" in r for r in rows), "classic says it cannot isolate it"
    assert "static output" in text, "headless, the controls degrade to plain output"


def test_playground_sweeps_grounded_sam_thresholds_on_tiny_models(my_photos, tmp_path, tmp_path_factory):
    from tests.helpers.segmentation import build_tiny_root

    root = build_tiny_root(tmp_path_factory)
    nb = _run("01_", f"photos = {str(my_photos)!r}\nsamples = ['flatlay']\nprompts = ['upper garment']\n"
                     f"engine = 'grounded-sam'\nmodel_root = {str(root)!r}\nbox_thresholds = [0.0, 0.99]\n"
                     "text_thresholds = [0.0, 0.5]", tmp_path / "work")
    text = _text(nb)
    assert "segmentation engine: grounded-sam" in text
    rows = [line for line in text.splitlines() if line.startswith("flatlay")]
    knobs = [" ".join(r.split()[3:7]) for r in rows]
    assert knobs == ["box 0, text 0", "box 0, text 0.5", "box 0.99, text 0", "box 0.99, text 0.5"], rows
    boxes = {k: int(r.split()[7]) for k, r in zip(knobs, rows)}
    assert boxes["box 0, text 0"] > boxes["box 0.99, text 0"], "a higher box_threshold keeps fewer boxes"
    for k, r in zip(knobs, rows):  # every box shown beats its cell's box_threshold
        if boxes[k]:
            assert float(r.split()[8]) > float(k.split()[1].rstrip(",")), r


def test_end_to_end_renders_your_product_folder(my_photos, tmp_path):
    nb = _run("03_", f"product_dir = {str(my_photos)!r}", tmp_path / "work")
    assert "my-tee: ok" in _text(nb)


def test_controls_become_widgets_when_ipywidgets_is_there(tmp_path, monkeypatch):
    """With the ``notebooks`` extra the interactive cells show ipywidgets (and still run headless)."""
    pytest.importorskip("ipywidgets")
    nb = _run("01_", "samples = ['tee-navy']\nprompts = ['garment']", tmp_path / "work", static=False)
    views = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert views, "the controls cell displays a widget"
