"""Security: nothing from a product folder or a product.yaml escapes the products root, the batch writes
only inside the catalog, and no code in the project unpickles untrusted data.

(The review page's own checks live with it, in tests/review_ui/test_review.py.)
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from pathlib import Path

import pytest

from pipelines.catalog.render import process_sku
from pipelines.engines.registry import get_engine
from pipelines.errors import InputError
from pipelines.imageio import save_image
from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest
from pipelines.product import discover_products, load_product, product_content_hash
from pipelines.samples import draw_tee
from tests.helpers.reliability import REPO, render_options

needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt",
                                    reason="needs POSIX symlinks")


@pytest.fixture(scope="module")
def tee_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tee") / "tee.png"
    save_image(path, draw_tee(128)[0])
    return path


def _product(root: Path, sku: str, tee_png: Path, spec: str = "backgrounds: [white]\n",
             name: str = "front.png") -> Path:
    d = root / sku
    d.mkdir(parents=True)
    (d / name).write_bytes(tee_png.read_bytes())
    (d / "product.yaml").write_text(spec, encoding="utf-8")
    return d


def _tree_digest(root: Path) -> dict[str, str]:
    """Every file and link under ``root`` (not following links) with its content hash or target."""
    out = {}
    for current, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(current) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# --------------------------------------------------------------------------------------------------
# Paths from a product.yaml
# --------------------------------------------------------------------------------------------------

TRAVERSALS = [
    "../other/front.png",
    "masks/../../other/front.png",
    "masks/../../../etc/passwd",
    "/etc/passwd",
    "\\\\server\\share\\x.png",
    "C:\\Windows\\x.png",
    "C:x.png",
    "..\\other\\front.png",
    "masks/\x00.png",
    "",
]


@pytest.mark.parametrize("value", TRAVERSALS)
@pytest.mark.parametrize("key", ["masks.garment", "main_image"])
def test_yaml_paths_cannot_leave_the_product_folder(tmp_path, tee_png, key, value):
    root = tmp_path / "products"
    _product(root, "other", tee_png)
    top, _, sub = key.partition(".")
    data = {top: {sub: value}} if sub else {top: value}
    d = _product(root, "sku", tee_png, json.dumps(data))  # JSON is YAML: any string survives quoting
    with pytest.raises(InputError) as e:
        load_product(d, root=root)
    assert e.value.path == str(d / "product.yaml") and e.value.key == key


@needs_symlinks
def test_yaml_mask_through_a_linked_folder_outside_is_rejected(tmp_path, tee_png):
    root, outside = tmp_path / "products", tmp_path / "outside"
    outside.mkdir()
    (outside / "garment.png").write_bytes(tee_png.read_bytes())
    d = _product(root, "sku", tee_png, "masks: {garment: sub/garment.png}\n")
    (d / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InputError, match="outside the products root") as e:
        load_product(d, root=root)
    assert "sub" in str(e.value)


# --------------------------------------------------------------------------------------------------
# Paths from a folder: SKU names, file names, symbolic links
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sku", ["../outside", "../../etc", "/etc", "a/../../outside", "good/../../outside"])
def test_render_task_refuses_a_sku_that_leaves_the_products_root(tmp_path, tee_png, sku):
    """The flow's task takes a SKU string (a deployment parameter can set it): it must stay a folder name."""
    from flows.catalog_batch import render_sku

    root, catalog = tmp_path / "products", tmp_path / "catalog"
    _product(root, "good", tee_png)
    _product(tmp_path, "outside", tee_png)
    entry = render_sku.fn(str(root), sku, str(catalog), engine="classic")
    assert entry["status"] == "failed"
    assert "outside the products root" in entry["error"] or "SKU" in entry["error"]
    assert not catalog.exists() or not any(p.name != ".locks" for p in catalog.iterdir())


def test_load_product_refuses_a_folder_outside_its_root(tmp_path, tee_png):
    root = tmp_path / "products"
    root.mkdir()
    d = _product(tmp_path, "elsewhere", tee_png)
    with pytest.raises(InputError, match="outside the products root"):
        load_product(root / ".." / "elsewhere", root=root)
    assert load_product(d).sku == "elsewhere"  # without a root, its own parent is the root


@needs_symlinks
@pytest.mark.parametrize("where", ["front.png", "product.yaml", "masks/product.png", "masks", "notes.txt",
                                   "deep/er/link", "all"])
def test_links_leaving_the_root_are_rejected_wherever_they_are(tmp_path, tee_png, where):
    root, outside = tmp_path / "products", tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(tee_png.read_bytes())
    d = root / "sku"
    d.mkdir(parents=True)
    if where != "front.png":
        (d / "front.png").write_bytes(tee_png.read_bytes())
    link = d / where
    link.parent.mkdir(parents=True, exist_ok=True)
    if where == "masks":
        link.symlink_to(outside, target_is_directory=True)
    elif where == "all":
        link.symlink_to("/", target_is_directory=True)  # hashing must never walk the whole disk
    else:
        link.symlink_to(outside / "x.png")
    with pytest.raises(InputError, match="outside the products root") as e:
        load_product(d, root=root)
    assert e.value.path == str(link)
    products, failures = discover_products(root)
    assert not products and [f[0] for f in failures] == ["sku"]


@needs_symlinks
def test_links_inside_the_root_and_link_loops_are_fine(tmp_path, tee_png):
    root = tmp_path / "products"
    shared = _product(root, "shared", tee_png)
    d = _product(root, "sku", tee_png)
    (d / "size-chart.png").symlink_to(shared / "front.png")
    (d / "loop").symlink_to(d, target_is_directory=True)
    product = load_product(d, root=root)
    assert [p.name for p in product.images] == ["front.png", "size-chart.png"]
    assert len(product_content_hash(product, {})) == 64  # the loop is walked once, not forever


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_cannot_hang_the_batch(tmp_path, tee_png):
    root = tmp_path / "products"
    d = _product(root, "sku", tee_png)
    os.mkfifo(d / "notes.txt")
    product = load_product(d, root=root)
    assert len(product_content_hash(product, {})) == 64  # the pipe is not read (it would block)
    d2 = root / "sku2"
    d2.mkdir()
    (d2 / "front.png").write_bytes(tee_png.read_bytes())
    os.mkfifo(d2 / "product.yaml")
    with pytest.raises(InputError, match="not a regular file"):
        load_product(d2, root=root)


def test_odd_file_names_stay_inside_the_catalog_entry_and_products_are_never_written(tmp_path, tee_png):
    root, catalog = tmp_path / "products", tmp_path / "catalog"
    d = _product(root, "sku", tee_png, name="a..b.png")
    for name in ("спина.PNG", "name with spaces.jpg", "-rf.png", "main.png", "x..y.png", "$(id).png"):
        (d / name).write_bytes(tee_png.read_bytes())
    before = _tree_digest(root)
    result = process_sku(load_product(d, root=root), catalog, get_engine("classic"), render_options())
    assert result.status == "ok", result.error
    entry = (catalog / "sku").resolve()
    manifest = read_manifest(entry / MANIFEST_NAME)
    files = [r["file"] for r in manifest["outputs"] + manifest["work"]]
    assert len(files) == len(set(files))
    for f in files:
        assert (entry / f).resolve().is_relative_to(entry), f
        assert (entry / f).is_file(), f
    assert _tree_digest(root) == before, "the batch wrote into the products folder"
    outside_catalog = {p.name for p in tmp_path.iterdir()}
    assert outside_catalog == {"products", "catalog"}


def test_a_backslash_in_an_image_name_is_refused_up_front(tmp_path, tee_png):
    """A Windows separator cannot appear in catalog paths: refuse the file clearly before any rendering."""
    root = tmp_path / "products"
    d = _product(root, "sku", tee_png)
    (d / "x\\..\\..\\y.png").write_bytes(tee_png.read_bytes())
    with pytest.raises(InputError, match="contains") as e:
        load_product(d, root=root)
    assert e.value.path == str(d / "x\\..\\..\\y.png")


# --------------------------------------------------------------------------------------------------
# No unpickling of untrusted data anywhere in the source tree
# --------------------------------------------------------------------------------------------------

_SCANNED_DIRS = ("pipelines", "flows", "bench", "tests", "notebooks", "scripts")
_SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}
_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_loads(source: str, filename: str = "<source>") -> list[str]:
    """Calls in ``source`` that could unpickle or construct arbitrary objects from untrusted data.

    Flags: ``torch.load`` without ``weights_only=True``; any ``weights_only=False``; ``pickle``/``dill``/
    ``joblib``/``shelve``/``marshal`` loads and ``read_pickle``; ``yaml.load``/``load_all`` without a
    safe loader (``SafeLoader``, ``CSafeLoader`` or a class of the file deriving from one) and
    ``yaml.unsafe_load``/``full_load``; ``numpy.load(allow_pickle=True)``; ``trust_remote_code=True``;
    ``torch.hub.load``.
    """
    tree = ast.parse(source, filename)
    torch_load_names = {"torch.load"}
    safe_loaders = set(_SAFE_YAML_LOADERS)
    for node in ast.walk(tree):  # local aliases: `from torch import load`, `class L(yaml.SafeLoader)`
        if isinstance(node, ast.ImportFrom) and node.module == "torch":
            torch_load_names |= {a.asname or a.name for a in node.names if a.name == "load"}
        bases = [_dotted(b).split(".")[-1] for b in getattr(node, "bases", [])]
        if isinstance(node, ast.ClassDef) and any(b in _SAFE_YAML_LOADERS for b in bases):
            safe_loaders.add(node.name)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        short = name.split(".")[-1]
        where = f"{filename}:{node.lineno}: {name or short}"
        weights_only = _kw(node, "weights_only")
        if isinstance(weights_only, ast.Constant) and weights_only.value is False:
            found.append(f"{where}: weights_only=False")
        if name in torch_load_names and not _is_true(weights_only):
            found.append(f"{where}: torch.load without weights_only=True")
        if name == "torch.hub.load":
            found.append(f"{where}: torch.hub.load runs downloaded code")
        if _is_true(_kw(node, "trust_remote_code")):
            found.append(f"{where}: trust_remote_code=True")
        module = name.split(".")[0]
        if module in _PICKLE_MODULES and short in ("load", "loads", "Unpickler", "open"):
            found.append(f"{where}: unpickles data")
        if short == "read_pickle":
            found.append(f"{where}: unpickles data")
        if module == "yaml" and short in ("unsafe_load", "unsafe_load_all", "full_load", "full_load_all"):
            found.append(f"{where}: constructs arbitrary objects")
        if module == "yaml" and short in ("load", "load_all"):
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or _dotted(loader).split(".")[-1] not in safe_loaders:
                found.append(f"{where}: yaml.{short} without a SafeLoader")
        if short == "load" and module in ("np", "numpy") and _is_true(_kw(node, "allow_pickle")):
            found.append(f"{where}: numpy.load(allow_pickle=True)")
    return found


def _project_sources():
    for top in _SCANNED_DIRS:
        base = REPO / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            yield path.relative_to(REPO).as_posix(), path.read_text(encoding="utf-8")
        for path in sorted(base.rglob("*.ipynb")):
            if ".ipynb_checkpoints" in path.parts:
                continue
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
            for i, cell in enumerate(cells):
                if cell.get("cell_type") == "code":
                    src = "".join(cell.get("source", []))
                    # IPython magics and shell escapes are not Python: blank them out.
                    lines = src.splitlines()
                    src = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in lines)
                    yield f"{path.relative_to(REPO).as_posix()}[cell {i}]", src


def test_no_unsafe_deserialisation_in_the_source_tree():
    scanned, found = 0, []
    for name, source in _project_sources():
        try:
            found += unsafe_loads(source, name)
        except SyntaxError as exc:  # a file being edited right now; it is not ours to judge here
            pytest.fail(f"{name} does not parse: {exc}")
        scanned += 1
    assert scanned > 20
    assert not found, "\n".join(found)


@pytest.mark.parametrize("code", [
    "import torch\ntorch.load('x.pt')",
    "import torch\ntorch.load('x.pt', map_location='cpu', weights_only=False)",
    "from torch import load\nload('x.pt')",
    "from torch import load as tl\ntl('x.pt')",
    "import pickle\npickle.loads(b'')",
    "import pickle\npickle.load(open('x', 'rb'))",
    "import joblib\njoblib.load('m.pkl')",
    "import pandas as pd\npd.read_pickle('x')",
    "import yaml\nyaml.load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.Loader)",
    "import yaml\nyaml.load(text, yaml.FullLoader)",
    "import yaml\nyaml.unsafe_load(text)",
    "import yaml\nyaml.full_load(text)",
    "import numpy as np\nnp.load('x.npy', allow_pickle=True)",
    "from transformers import AutoModel\nAutoModel.from_pretrained('x', trust_remote_code=True)",
    "import torch\ntorch.hub.load('repo', 'model')",
    "from diffusers import UNet2DModel\nUNet2DModel.from_pretrained('x', weights_only=False)",
])
def test_the_scanner_catches_each_unsafe_load(code):
    assert unsafe_loads(code), code


@pytest.mark.parametrize("code", [
    "import torch\ntorch.load('x.pt', map_location='cpu', weights_only=True)",
    "import yaml\nyaml.safe_load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
    "import yaml\nyaml.load(text, yaml.CSafeLoader)",
    "import yaml\nclass L(yaml.SafeLoader):\n    pass\nyaml.load(text, Loader=L)",
    "import numpy as np\nnp.load('x.npy')",
    "from safetensors.torch import load_file\nload_file('x.safetensors')",
    "import json\njson.load(f)",
])
def test_the_scanner_accepts_safe_loads(code):
    assert unsafe_loads(code) == []
