"""`pipelines.settings`: one typed settings object, the only module that touches the environment."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.errors import InputError
from pipelines.generation.settings import GenerationSettings
from pipelines.settings import GpuSettings, VitrineSettings, load_settings

REPO = Path(__file__).resolve().parents[2]
SETTINGS_MODULE = REPO / "pipelines" / "settings.py"
ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def _sources() -> list[Path]:
    return sorted(p for pkg in ("pipelines", "flows") for p in (REPO / pkg).rglob("*.py"))


def _env_uses(path: Path) -> list[str]:
    """Every ``os.environ``/``os.getenv``/``os.putenv`` (any alias of ``os``) and ``from os import environ``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    os_names = {"os"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names |= {a.asname or a.name for a in node.names if a.name == "os"}
        elif isinstance(node, ast.ImportFrom) and node.module in ("os", "posix", "nt"):
            found += [f"{path.name}:{node.lineno}: from os import {a.name}" for a in node.names if a.name in ENV_NAMES]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in ENV_NAMES and isinstance(node.value, ast.Name)
                and node.value.id in os_names):
            found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_exactly_one_module_touches_the_environment():
    uses = {p.relative_to(REPO).as_posix(): _env_uses(p) for p in _sources()}
    assert uses["pipelines/settings.py"], "the scan must see pipelines/settings.py's own os.environ"
    others = {k: v for k, v in uses.items() if v and k != "pipelines/settings.py"}
    assert others == {}


def test_the_scan_catches_every_spelling(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os as o\nfrom os import getenv, environ as e\no.environ.get('X')\no.putenv('A', 'b')\n")
    assert len(_env_uses(src)) == 4


_IMPORT_ALL = r"""
import importlib, os, pkgutil, sys
repo = sys.argv[1]
ours = (os.path.join(repo, "pipelines") + os.sep, os.path.join(repo, "flows") + os.sep)
skip = ("/os.py", "_collections_abc.py")
writes = []
cls = type(os.environ)
set_item, del_item = cls.__setitem__, cls.__delitem__

def caller():
    f = sys._getframe(2)
    while f is not None and (f.f_code.co_filename.endswith(skip) or f.f_code.co_filename.startswith("<frozen")):
        f = f.f_back
    return f.f_code.co_filename if f is not None else "?"

def setitem(self, key, value):
    if caller().startswith(ours):
        writes.append(f"{caller()}: set {key}")
    set_item(self, key, value)

def delitem(self, key):
    if caller().startswith(ours):
        writes.append(f"{caller()}: del {key}")
    del_item(self, key)

cls.__setitem__, cls.__delitem__ = setitem, delitem
before = dict(os.environ)
names = [m.name for pkg in ("pipelines", "flows") for m in pkgutil.walk_packages([os.path.join(repo, pkg)],
                                                                                 prefix=pkg + ".")
         if not m.name.endswith(".__main__")]  # `python -m` entry points run when imported
for name in names:
    importlib.import_module(name)
import json
ours_changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)
                      and k.startswith(("VITRINE_", "PREFECT_", "GLOG_", "TF_CPP_", "CUBLAS_")))
print(json.dumps({"modules": len(names), "writes": writes, "changed": ours_changed}))
"""


def test_importing_every_module_leaves_the_environment_unchanged():
    env = {k: v for k, v in __import__("os").environ.items()
           if not k.startswith(("PREFECT_SERVER_EPHEMERAL", "PREFECT_SERVER_ANALYTICS", "GLOG_", "TF_CPP_",
                                "PREFECT_LOGGING_LEVEL", "CUBLAS_"))}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", _IMPORT_ALL, str(REPO)], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["modules"] > 50
    assert result["writes"] == [] and result["changed"] == []


# -- precedence: flags > environment > config file > defaults -----------------------------------------------
@pytest.fixture()
def config(tmp_path):
    path = tmp_path / "vitrine.toml"
    path.write_text(
        'model_root = "/file/models"\n'
        'scratch_dir = "/file/scratch"\n'
        'identities_dirs = ["/file/ids"]\n'
        'native_logs = true\n'
        '[storage_options]\nendpoint_url = "http://minio:9000"\n'
        '[generation]\nsteps = 7\nguidance = 2.5\nloras = ["a@0.5", "b"]\ncontrolnet_scale = [1.0, 0.5]\n'
        '[gpu]\nguard = "always"\nslot_timeout_s = 30\nworker_name = "file-worker"\n', encoding="utf-8")
    return path


def test_defaults_without_flags_env_or_file():
    s = load_settings(environ={})
    assert s == VitrineSettings() and s.generation == GenerationSettings() and s.gpu == GpuSettings()
    assert s.model_root is None and s.scratch_root.name == "vitrine-scratch" and s.config_file is None


def test_config_file_over_defaults(config):
    s = load_settings(environ={}, config_file=config)
    assert s.model_root == Path("/file/models") and s.scratch_root == Path("/file/scratch")
    assert s.identities_dirs == (Path("/file/ids"),) and s.native_logs is True
    assert dict(s.storage_options) == {"endpoint_url": "http://minio:9000"}
    assert (s.generation.steps, s.generation.guidance, s.generation.loras) == (7, 2.5, ("a@0.5", "b"))
    assert s.generation.controlnet_scale == (1.0, 0.5) and s.generation.device == "auto"  # unset: default
    assert (s.gpu.guard, s.gpu.slot_timeout_s, s.gpu.worker_name) == ("always", 30.0, "file-worker")
    assert s.config_file == config


def test_environment_over_config_file(config):
    env = {"VITRINE_CONFIG": str(config), "VITRINE_MODEL_ROOT": "/env/models", "VITRINE_GEN_STEPS": "3",
           "VITRINE_GPU_GUARD": "never", "VITRINE_NATIVE_LOGS": "0", "VITRINE_STORAGE_OPTIONS": '{"anon": true}'}
    s = load_settings(environ=env)  # the file named by $VITRINE_CONFIG
    assert s.config_file == config
    assert s.model_root == Path("/env/models") and s.scratch_root == Path("/file/scratch")
    assert s.generation.steps == 3 and s.generation.guidance == 2.5  # per key: the file's other values stay
    assert s.gpu.guard == "never" and s.gpu.slot_timeout_s == 30.0 and s.native_logs is False
    assert dict(s.storage_options) == {"anon": True}


def test_flags_over_environment_and_file(config, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text('model_root = "/other"\n', encoding="utf-8")
    env = {"VITRINE_CONFIG": str(config), "VITRINE_MODEL_ROOT": "/env/models", "VITRINE_GEN_STEPS": "3"}
    s = load_settings({"model_root": "/flag/models", "generation": {"steps": 9}}, environ=env)
    assert s.model_root == Path("/flag/models") and s.generation.steps == 9
    assert load_settings({"model_root": None}, environ=env).model_root == Path("/env/models")  # None: not given
    s = load_settings(environ={"VITRINE_CONFIG": str(config)}, config_file=other)  # --config over $VITRINE_CONFIG
    assert s.model_root == Path("/other") and s.generation.steps is None


def test_max_upscale_precedence(tmp_path):
    path = tmp_path / "vitrine.toml"
    path.write_text("max_upscale = 5\n", encoding="utf-8")
    assert load_settings(environ={}).max_upscale == 8.0
    assert load_settings(environ={}, config_file=path).max_upscale == 5.0
    assert load_settings(environ={"VITRINE_MAX_UPSCALE": "3"}, config_file=path).max_upscale == 3.0
    assert load_settings({"max_upscale": 2.5}, environ={"VITRINE_MAX_UPSCALE": "3"}, config_file=path).max_upscale == 2.5


def test_environment_values_parse_as_before(tmp_path):
    s = load_settings(environ={"VITRINE_IDENTITIES": f"/a{__import__('os').pathsep}/b", "VITRINE_NOTEBOOK_STATIC": "1",
                               "VITRINE_GPU_LIMIT": " vitrine-gpu-h-0 ", "VITRINE_GPU_GUARD": " ",
                               "VITRINE_WORKER_NAME": "w1", "CUDA_VISIBLE_DEVICES": "0",
                               "VITRINE_GEN_LORAS": "x@0.5,y", "VITRINE_MODEL_ROOT": ""})
    assert s.identities_dirs == (Path("/a"), Path("/b")) and s.notebook_static is True
    assert s.gpu == GpuSettings(limit="vitrine-gpu-h-0", guard="auto", worker_name="w1", cuda_visible_devices="0")
    assert s.generation.loras == ("x@0.5", "y") and s.model_root is None
    assert s.generation == GenerationSettings.from_env({"VITRINE_GEN_LORAS": "x@0.5,y"})


# -- validation: an InputError naming the variable, or the file and key ---------------------------------------
@pytest.mark.parametrize(("env", "key", "words"), [
    ({"VITRINE_GEN_STEPS": "many"}, "VITRINE_GEN_STEPS", "cannot parse 'many'"),
    ({"VITRINE_GEN_STEPS": "500"}, "VITRINE_GEN_STEPS", "steps must be in [1, 200]"),
    ({"VITRINE_GEN_COLOUR": "red"}, "VITRINE_GEN_COLOUR", "unknown setting"),
    ({"VITRINE_GPU_GUARD": "sometimes"}, "VITRINE_GPU_GUARD", "VITRINE_GPU_GUARD='sometimes'"),
    ({"VITRINE_GPU_SLOT_TIMEOUT_S": "soon"}, "VITRINE_GPU_SLOT_TIMEOUT_S", "a number of seconds"),
    ({"VITRINE_GPU_SLOT_TIMEOUT_S": "-1"}, "VITRINE_GPU_SLOT_TIMEOUT_S", "positive"),
    ({"VITRINE_MAX_UPSCALE": "lots"}, "VITRINE_MAX_UPSCALE", "expected a number"),
    ({"VITRINE_MAX_UPSCALE": "0.5"}, "VITRINE_MAX_UPSCALE", "must be a number >= 1"),
    ({"VITRINE_STORAGE_OPTIONS": "{bad"}, "VITRINE_STORAGE_OPTIONS", "is not JSON"),
    ({"VITRINE_STORAGE_OPTIONS": "[1]"}, "VITRINE_STORAGE_OPTIONS", "must be a JSON object"),
    ({"VITRINE_NATIVE_LOGS": "1", "VITRINE_CONFIG": "/no/such/vitrine.toml"}, "VITRINE_CONFIG", "not found"),
])
def test_environment_errors_name_the_variable(env, key, words):
    with pytest.raises(InputError) as info:
        load_settings(environ=env)
    assert info.value.key == key and words in str(info.value) and key in str(info.value)


@pytest.mark.parametrize(("text", "key", "words"), [
    ("colour = 'red'\n", "colour", "unknown setting"),
    ("model_root = 3\n", "model_root", "expected a path"),
    ("native_logs = 'yes'\n", "native_logs", "expected true or false"),
    ("[generation]\nsteps = 500\n", "generation.steps", "steps must be in [1, 200], got 500"),
    ("[generation]\ncolour = 'red'\n", "generation.colour", "unknown generation setting"),
    ("[generation]\nloras = ['a@9']\n", "generation.loras", "must be in (0, 4]"),
    ("[gpu]\nguard = 'sometimes'\n", "gpu.guard", "guard='sometimes'"),
    ("[gpu]\nlimits = 2\n", "gpu.limits", "unknown setting"),
    ("[gpu]\nslot_timeout_s = 'soon'\n", "gpu.slot_timeout_s", "expected a number"),
    ("gpu = 3\n", "gpu", "expected a table"),
    ("max_upscale = 'big'\n", "max_upscale", "expected a number"),
])
def test_config_file_errors_name_the_file_and_key(tmp_path, text, key, words):
    path = tmp_path / "vitrine.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_settings(environ={}, config_file=path)
    assert info.value.key == key and info.value.path == str(path)
    assert words in str(info.value) and f"[{key}]" in str(info.value)


def test_a_config_file_that_is_not_toml_or_missing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("model_root = \n", encoding="utf-8")
    with pytest.raises(InputError, match="not valid TOML") as info:
        load_settings(environ={}, config_file=bad)
    assert info.value.path == str(bad)
    with pytest.raises(InputError, match=r"\[--config\]: config file not found"):
        load_settings(environ={}, config_file=tmp_path / "missing.toml")


def test_cli_config_errors_exit_2(tmp_path, capsys):
    from flows.cli import main

    path = tmp_path / "vitrine.toml"
    path.write_text("[generation]\nsteps = 0\n", encoding="utf-8")
    assert main(["--config", str(path), "models", "--json"]) == 2
    err = capsys.readouterr().err
    assert "vitrine: error:" in err and str(path) in err and "[generation.steps]" in err


def test_cli_builds_settings_once_from_flags_env_and_file(tmp_path, monkeypatch):
    import flows.cli as cli
    from flows.cli import commands

    path = tmp_path / "vitrine.toml"
    path.write_text('model_root = "/file/models"\n[generation]\nsteps = 4\n', encoding="utf-8")
    seen = []
    monkeypatch.setattr(commands, "cmd_models", lambda args: seen.append(args.settings) or 0)
    monkeypatch.setenv("VITRINE_GEN_SEAM_STEPS", "3")
    monkeypatch.delenv("VITRINE_MODEL_ROOT", raising=False)
    monkeypatch.delenv("VITRINE_CONFIG", raising=False)
    assert cli.main(["--config", str(path), "models", "--model-root", str(tmp_path)]) == 0
    assert cli.main(["--config", str(path), "models"]) == 0
    flag, file = seen
    assert flag.model_root == tmp_path and file.model_root == Path("/file/models")
    assert flag.generation.steps == 4 and flag.generation.seam_steps == 3 and flag.config_file == path


# -- the engine cache follows the settings -------------------------------------------------------------------
def test_engine_cache_is_keyed_by_settings():
    from flows.catalog_batch import worker_engine
    from flows.local_batch import engine_for

    base = VitrineSettings()
    same = VitrineSettings()
    changed = base.replace(generation=base.generation.replace(steps=3))
    other_root = base.replace(model_root=Path("/nowhere"))
    first = engine_for("classic", base)
    assert engine_for("classic", same) is first and worker_engine("classic", same) is first
    assert engine_for("classic", changed) is not first  # a long-lived process picks up new settings
    assert engine_for("classic", other_root) is not first
    assert engine_for("classic", changed) is engine_for("classic", changed)


def test_settings_are_frozen_and_hashable():
    s = VitrineSettings(storage_options={"anon": True})
    with pytest.raises(AttributeError):
        s.model_root = Path("/x")  # type: ignore[misc]
    assert hash(s) == hash(VitrineSettings(storage_options={"other": 1}))  # options do not change the key
    assert s != VitrineSettings()
