"""One settings object for a Vitrine process, and the only module that touches ``os.environ``.

`VitrineSettings` is built once, by an entry point (the CLI, a flow at its start, a notebook helper),
with `load_settings` from three layers, the first that sets a value wins:

1. flags (the CLI's options, a flow's parameters), passed as a mapping;
2. environment variables (``VITRINE_MODEL_ROOT``, ``VITRINE_GEN_STEPS``, ... listed in
   docs/configuration.md);
3. a TOML config file: ``--config FILE`` or ``$VITRINE_CONFIG``;

then the defaults. The object is handed down explicitly: library functions take the values they need as
arguments (or the settings object), never from the environment.

The few writes to the process environment are explicit functions that entry points call, never import
side effects: `configure_process_env` (native libraries' log levels and Prefect's embedded-server
defaults, before mediapipe or Prefect is imported), `cublas_workspace_config` (deterministic cuBLAS,
called by the generative engine before CUDA starts) and `set_process_env`. `process_environ` gives a copy of the environment for child processes.

Every validation error is an `InputError` naming the variable (``VITRINE_GPU_GUARD``) or the config
file and key (``vitrine.toml [gpu.guard]``).
"""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pipelines.errors import InputError
from pipelines.generation.settings import ENV_PREFIX as GEN_ENV_PREFIX
from pipelines.generation.settings import GenerationSettings, parse_setting

#: Environment variable naming the TOML config file (the CLI's ``--config`` wins).
CONFIG_ENV = "VITRINE_CONFIG"
MODEL_ROOT_ENV = "VITRINE_MODEL_ROOT"
SCRATCH_ENV = "VITRINE_SCRATCH"
STORAGE_OPTIONS_ENV = "VITRINE_STORAGE_OPTIONS"
IDENTITIES_ENV = "VITRINE_IDENTITIES"
NATIVE_LOGS_ENV = "VITRINE_NATIVE_LOGS"
NOTEBOOK_STATIC_ENV = "VITRINE_NOTEBOOK_STATIC"
GPU_LIMIT_ENV = "VITRINE_GPU_LIMIT"
GPU_GUARD_ENV = "VITRINE_GPU_GUARD"
GPU_SLOT_TIMEOUT_ENV = "VITRINE_GPU_SLOT_TIMEOUT_S"
WORKER_NAME_ENV = "VITRINE_WORKER_NAME"
CUDA_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"
MAX_UPSCALE_ENV = "VITRINE_MAX_UPSCALE"
#: The default of `VitrineSettings.max_upscale` (as `pipelines.catalog.options.RenderOptions.max_upscale`).
DEFAULT_MAX_UPSCALE = 8.0

GPU_GUARD_MODES = ("auto", "always", "never")
GPU_SLOT_TIMEOUT_S = 3600.0
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")

#: Defaults an entry point puts into the process environment (an explicit setting wins), see
#: `configure_process_env`: mediapipe/TFLite's native logs at warnings and above, and Prefect's embedded
#: API server made to work on a fresh 2-core machine.
NATIVE_LOG_ENV_DEFAULTS = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
PREFECT_ENV_DEFAULTS = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
                        "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


@dataclass(frozen=True)
class GpuSettings:
    """How a worker process shares its GPU (flows/gpu.py).

    Attributes:
        limit (`str`, *optional*): the Prefect global concurrency limit of this process's GPU
            (``VITRINE_GPU_LIMIT``, exported by ``vitrine worker --gpu N``); `None`: no GPU slot.
        guard (`str`, *optional*, defaults to ``"auto"``): ``auto`` (every engine but the CPU-only ones),
            ``always`` or ``never`` (``VITRINE_GPU_GUARD``).
        slot_timeout_s (`float`, *optional*, defaults to 3600): seconds a model call waits for its slot
            (``VITRINE_GPU_SLOT_TIMEOUT_S``).
        worker_name (`str`, *optional*): this worker's name in reports (``VITRINE_WORKER_NAME``).
        cuda_visible_devices (`str`, *optional*): ``CUDA_VISIBLE_DEVICES`` as this process saw it (recorded
            in reports; environment only).
    """

    limit: str | None = None
    guard: str = "auto"
    slot_timeout_s: float = GPU_SLOT_TIMEOUT_S
    worker_name: str | None = None
    cuda_visible_devices: str | None = None

    def __post_init__(self) -> None:
        if self.guard not in GPU_GUARD_MODES:
            raise InputError(f"{GPU_GUARD_ENV}={self.guard!r}: expected one of {', '.join(GPU_GUARD_MODES)}",
                             key=GPU_GUARD_ENV)
        if not self.slot_timeout_s > 0:
            raise InputError(f"the GPU slot timeout must be a positive number of seconds, got {self.slot_timeout_s}",
                             key=GPU_SLOT_TIMEOUT_ENV)


@dataclass(frozen=True)
class VitrineSettings:
    """Everything a Vitrine process is configured with, typed and validated (see the module docstring).

    Attributes:
        model_root (`Path`, *optional*): model weights laid out as ``DIR/<org>/<name>/``
            (``--model-root``, ``VITRINE_MODEL_ROOT``).
        scratch_dir (`Path`, *optional*): local scratch of catalogs at URLs (``VITRINE_SCRATCH``);
            `scratch_root` gives the default ``<tmp>/vitrine-scratch``.
        storage_options (`dict`, *optional*): fsspec storage options of catalogs at URLs
            (``VITRINE_STORAGE_OPTIONS``, a JSON object).
        identities_dirs (`tuple[Path, ...]`, *optional*): folders searched first for identity preset names
            (``VITRINE_IDENTITIES``, ``os.pathsep``-separated).
        generation (`GenerationSettings`): the generative engines' settings (``VITRINE_GEN_*``).
        native_logs (`bool`, *optional*, defaults to `False`): keep native libraries' stderr lines
            (``VITRINE_NATIVE_LOGS``).
        notebook_static (`bool`, *optional*, defaults to `False`): notebooks show plain output instead of
            interactive controls (``VITRINE_NOTEBOOK_STATIC``, any non-empty value).
        gpu (`GpuSettings`): GPU slot sharing of a worker.
        max_upscale (`float`, *optional*, defaults to 8.0): a SKU fails, naming the photo and its size, when an
            output would enlarge its photo more than this (``--max-upscale``, ``VITRINE_MAX_UPSCALE``; >= 1).
        config_file (`Path`, *optional*): the config file the settings were read from, if any.
    """

    model_root: Path | None = None
    scratch_dir: Path | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    identities_dirs: tuple[Path, ...] = ()
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    native_logs: bool = False
    notebook_static: bool = False
    gpu: GpuSettings = field(default_factory=GpuSettings)
    max_upscale: float = DEFAULT_MAX_UPSCALE
    config_file: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.storage_options, Mapping):
            raise InputError(f"{STORAGE_OPTIONS_ENV} must be a JSON object", key=STORAGE_OPTIONS_ENV)
        if not isinstance(self.generation, GenerationSettings):
            raise InputError("generation must be a GenerationSettings", key="generation")
        if isinstance(self.max_upscale, bool) or not isinstance(self.max_upscale, (int, float)) \
                or not self.max_upscale >= 1.0:
            raise InputError(f"the largest upscale must be a number >= 1, got {self.max_upscale!r}",
                             key=MAX_UPSCALE_ENV)

    @property
    def scratch_root(self) -> Path:
        """`scratch_dir`, or ``<tmp>/vitrine-scratch``."""
        return self.scratch_dir or Path(tempfile.gettempdir()) / "vitrine-scratch"

    def replace(self, **changes: Any) -> VitrineSettings:
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)


# -- loading ----------------------------------------------------------------------------------------------
#: Config-file keys (TOML) → (field, kind). Sections ``[generation]`` (the `GenerationSettings` fields),
#: ``[gpu]`` (`GpuSettings` fields but ``cuda_visible_devices``) and ``[storage_options]`` (a table).
_TOP_KEYS = {"model_root": "path", "scratch_dir": "path", "identities_dirs": "paths", "native_logs": "bool",
             "notebook_static": "bool", "storage_options": "table", "generation": "section", "gpu": "section",
             "max_upscale": "float"}
_GPU_KEYS = {"limit": "str", "guard": "str", "slot_timeout_s": "float", "worker_name": "str"}
#: Environment variable → (section, key) in the same shape as the config file.
_ENV_KEYS = {MODEL_ROOT_ENV: ("", "model_root"), SCRATCH_ENV: ("", "scratch_dir"),
             IDENTITIES_ENV: ("", "identities_dirs"), NATIVE_LOGS_ENV: ("", "native_logs"),
             NOTEBOOK_STATIC_ENV: ("", "notebook_static"), STORAGE_OPTIONS_ENV: ("", "storage_options"),
             GPU_LIMIT_ENV: ("gpu", "limit"), GPU_GUARD_ENV: ("gpu", "guard"),
             GPU_SLOT_TIMEOUT_ENV: ("gpu", "slot_timeout_s"), WORKER_NAME_ENV: ("gpu", "worker_name"),
             CUDA_DEVICES_ENV: ("gpu", "cuda_visible_devices"), MAX_UPSCALE_ENV: ("", "max_upscale")}


@dataclass
class _Layers:
    """Typed values per (section, key), each with where it came from (for error messages)."""

    values: dict[tuple[str, str], Any] = field(default_factory=dict)
    where: dict[tuple[str, str], tuple[str | None, str]] = field(default_factory=dict)  # (path, key)

    def put(self, section: str, key: str, value: Any, path: str | None, label: str) -> None:
        self.values[(section, key)] = value
        self.where[(section, key)] = (path, label)


def _bool_env(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise InputError(f"expected one of 1/0/true/false/yes/no/on/off, got {raw!r}", key=name)


def _env_layer(env: Mapping[str, str], into: _Layers) -> None:
    for name, (section, key) in _ENV_KEYS.items():
        raw = env.get(name)
        if raw is None:
            continue
        if key in ("model_root", "scratch_dir"):
            if raw:
                into.put(section, key, Path(raw), None, name)
        elif key == "identities_dirs":
            into.put(section, key, tuple(Path(d) for d in raw.split(os.pathsep) if d), None, name)
        elif key == "native_logs":
            into.put(section, key, raw.strip().lower() in _TRUE, None, name)
        elif key == "notebook_static":
            into.put(section, key, bool(raw), None, name)
        elif key == "storage_options":
            if raw.strip():
                try:
                    opts = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{name} is not JSON: {exc}", key=name) from None
                if not isinstance(opts, dict):
                    raise InputError(f"{name} must be a JSON object", key=name)
                into.put(section, key, opts, None, name)
        elif key == "guard":
            into.put(section, key, raw.strip() or "auto", None, name)
        elif key == "limit":
            if raw.strip():
                into.put(section, key, raw.strip(), None, name)
        elif key in ("slot_timeout_s", "max_upscale"):
            try:
                into.put(section, key, float(raw), None, name)
            except ValueError:
                what = "a number of seconds" if key == "slot_timeout_s" else "a number"
                raise InputError(f"expected {what}, got {raw!r}", key=name) from None
        elif raw:  # worker_name, cuda_visible_devices
            into.put(section, key, raw, None, name)
    for name, raw in env.items():  # VITRINE_GEN_*: names and parsing as GenerationSettings.from_env
        if name.startswith(GEN_ENV_PREFIX):
            fname = name[len(GEN_ENV_PREFIX):].lower()
            into.put("generation", fname, parse_setting(fname, raw.strip(), name), None, name)


def _file_value(kind: str, value: Any, path: str, label: str) -> Any:
    def bad(expected: str):
        raise InputError(f"expected {expected}, got {value!r}", path, label)

    if kind == "path":
        return Path(value) if isinstance(value, str) and value else bad("a path (a non-empty string)")
    if kind == "paths":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            bad("a list of paths")
        return tuple(Path(v) for v in value)
    if kind == "bool":
        return value if isinstance(value, bool) else bad("true or false")
    if kind == "table":
        return dict(value) if isinstance(value, dict) else bad("a table")
    if kind == "str":
        return value if isinstance(value, str) else bad("a string")
    if kind == "float":
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else bad("a number")
    raise AssertionError(kind)


def _generation_file_value(fname: str, value: Any, path: str, label: str) -> Any:
    if fname not in GenerationSettings.__dataclass_fields__:
        known = ", ".join(GenerationSettings.__dataclass_fields__)
        raise InputError(f"unknown generation setting; known: {known}", path, label)
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, str):  # the environment's text forms work in the file too ("a@0.8,b", "0.8,0.6")
        return parse_setting(fname, value.strip(), label)
    return value


def _file_layer(path: Path, into: _Layers, source_key: str) -> None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("config file not found", path, source_key) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the config file: {exc}", path, source_key) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", path) from None
    where = str(path)
    for key, value in data.items():
        kind = _TOP_KEYS.get(key)
        if kind is None:
            raise InputError(f"unknown setting; known: {', '.join(_TOP_KEYS)}", where, key)
        if kind != "section":
            into.put("", key, _file_value(kind, value, where, key), where, key)
            continue
        if not isinstance(value, dict):
            raise InputError("expected a table", where, key)
        for sub, v in value.items():
            label = f"{key}.{sub}"
            if key == "generation":
                into.put(key, sub, _generation_file_value(sub, v, where, label), where, label)
            elif sub in _GPU_KEYS:
                into.put(key, sub, _file_value(_GPU_KEYS[sub], v, where, label), where, label)
            else:
                raise InputError(f"unknown setting; known: {', '.join(_GPU_KEYS)}", where, label)


def _flag_layer(flags: Mapping[str, Any], into: _Layers) -> None:
    for key, value in flags.items():
        if key in ("generation", "gpu") and isinstance(value, Mapping):
            for sub, v in value.items():
                if v is not None:
                    into.put(key, sub, tuple(v) if isinstance(v, list) else v, None, f"--{key}.{sub}")
        elif key in _TOP_KEYS:
            if value is None:
                continue
            if key in ("model_root", "scratch_dir"):
                value = Path(value)
            elif key == "identities_dirs":
                value = tuple(Path(v) for v in value)
            into.put("", key, value, None, "--" + key.replace("_", "-"))
        else:
            raise InputError(f"unknown setting; known: {', '.join(_TOP_KEYS)}", key=key)


def _build(section: str, cls: type, layers: _Layers) -> Any:
    """``cls(**values of section)``, an `InputError` re-keyed to where the bad value came from."""
    kwargs = {k: v for (s, k), v in layers.values.items() if s == section}
    try:
        return cls(**kwargs)
    except InputError as exc:
        fname = _field_of(exc.key, section)
        path, label = layers.where.get((section, fname), (None, exc.key))
        if path is None and label == exc.key:
            raise
        message = exc.message.replace(f"{exc.key}=", f"{fname}=") if exc.key else exc.message
        raise InputError(message, path, label) from None
    except TypeError as exc:  # a value of the wrong type in a flag mapping or config file
        raise InputError(str(exc), key=section or None) from None


def _field_of(key: str | None, section: str) -> str:
    if key is None:
        return ""
    if section == "generation" and key.startswith(GEN_ENV_PREFIX):
        return key[len(GEN_ENV_PREFIX):].lower()
    for name, (s, k) in _ENV_KEYS.items():
        if name == key and s == section:
            return k
    return key


def load_settings(flags: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None,
                  config_file: str | Path | None = None) -> VitrineSettings:
    """Settings from flags > environment > config file > defaults (see the module docstring).

    Args:
        flags (`Mapping`, *optional*): values given on the command line or as flow parameters, keyed as the
            config file (``model_root``, ``generation`` → ``{"steps": 4}``, ``gpu`` → ``{...}``); `None`
            values are not given.
        environ (`Mapping`, *optional*): the environment; default the process's.
        config_file (`str | Path`, *optional*): a TOML config file (``--config``); default
            ``$VITRINE_CONFIG``, else none.

    Returns:
        `VitrineSettings`.

    Raises:
        `InputError`: a bad value, an unknown key or ``VITRINE_GEN_*`` variable, or a config file that
            cannot be read; the message names the variable, or the file and key.
    """
    env = os.environ if environ is None else environ
    layers = _Layers()
    source_key = "--config"
    if config_file is None and env.get(CONFIG_ENV):
        config_file, source_key = env[CONFIG_ENV], CONFIG_ENV
    path = Path(config_file).expanduser() if config_file else None
    if path is not None:
        _file_layer(path, layers, source_key)
    _env_layer(env, layers)
    _flag_layer(flags or {}, layers)
    generation = _build("generation", GenerationSettings, layers)
    gpu = _build("gpu", GpuSettings, layers)
    top = {k: v for (s, k), v in layers.values.items() if s == ""}
    return VitrineSettings(**top, generation=generation, gpu=gpu, config_file=path)


def settings_fields() -> list[str]:
    """The top-level field names of `VitrineSettings` (documentation, tests)."""
    return [f.name for f in fields(VitrineSettings)]


# -- the process environment --------------------------------------------------------------------------------
def configure_process_env(*, quiet_prefect_logs: bool = False) -> None:
    """Defaults an entry point puts in the process environment before it imports mediapipe or Prefect.

    ``GLOG_minloglevel=2`` and ``TF_CPP_MIN_LOG_LEVEL=2`` (native logs at warnings and above), Prefect's
    embedded-server start-up timeout (120 s) and no analytics; with ``quiet_prefect_logs``,
    ``PREFECT_LOGGING_LEVEL=WARNING``. A value already in the environment wins. Child processes inherit
    them.
    """
    for name, value in {**NATIVE_LOG_ENV_DEFAULTS, **PREFECT_ENV_DEFAULTS}.items():
        os.environ.setdefault(name, value)
    if quiet_prefect_logs:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def cublas_workspace_config(default: str) -> str:
    """``CUBLAS_WORKSPACE_CONFIG``, set to ``default`` unless already set (cuBLAS reads it when it starts)."""
    return os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", default)


def set_process_env(name: str, value: str) -> None:
    """Set one variable of the process environment (e.g. a log level before Prefect reads its settings)."""
    os.environ[name] = value


def process_environ() -> dict[str, str]:
    """A copy of the process environment (for a child process's environment, or a Prefect profile check)."""
    return dict(os.environ)
