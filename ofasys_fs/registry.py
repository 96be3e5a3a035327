"""Name -> class registries for every pluggable kind, and `--user-dir` plugin import (fairseq style)."""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import os
import pkgutil
import sys
import traceback
from typing import Any, Callable, Optional

from . import contracts
from .errors import PluginError


def did_you_mean(name: str, choices) -> str:
    """' Did you mean "x"?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    if not close:
        close = [c for c in choices if str(c).lower() == str(name).lower()]
    return f' Did you mean "{close[0]}"?' if close else ""


@dataclasses.dataclass
class Entry:
    name: str
    cls: Any
    dataclass: Optional[type]
    aliases: tuple = ()


class Registry:
    """Registered classes of one kind, looked up by name or alias.

    `builtins` names the package whose modules register the built-in entries; it is imported on the first
    lookup, so that code using a registry never imports the implementations (and the layers stay one-way).
    """

    def __init__(self, kind: str, base_class: Optional[type] = None, default: Optional[str] = None,
                 builtins: Optional[str] = None):
        self.kind, self.base_class, self.default, self.builtins = kind, base_class, default, builtins
        self.entries: dict[str, Entry] = {}
        self.aliases: dict[str, str] = {}

    def load_builtins(self) -> None:
        """Import the built-in package once (its modules register themselves)."""
        package, self.builtins = self.builtins, None
        if package is not None:
            importlib.import_module(package)

    def __contains__(self, name: str) -> bool:
        self.load_builtins()
        return name in self.entries or name in self.aliases

    def names(self) -> list[str]:
        self.load_builtins()
        return sorted(self.entries)

    def get(self, name: Optional[str]) -> Entry:
        self.load_builtins()
        name = name or self.default
        if name is None:
            raise PluginError(f"no {self.kind} name given and the {self.kind} registry has no default")
        name = self.aliases.get(name, name)
        if name not in self.entries:
            known = self.names() + sorted(self.aliases)
            raise PluginError(
                f'unknown {self.kind} "{name}".{did_you_mean(name, known)} '
                f"Known: {', '.join(self.names()) or '(none)'}. "
                f"Plugins register more with --user-dir."
            )
        return self.entries[name]

    def register(self, name: str, dataclass: Optional[type] = None, aliases=()) -> Callable:
        def wrap(cls):
            for n in (name, *aliases):
                if n in self:
                    prior = self.get(n).cls
                    raise PluginError(
                        f'{self.kind} "{n}" is already registered by {prior.__module__}.{prior.__qualname__}; '
                        f"cannot register {cls.__module__}.{cls.__qualname__} under the same name"
                    )
            if self.base_class is not None and not (isinstance(cls, type) and issubclass(cls, self.base_class)):
                raise PluginError(
                    f'{self.kind} "{name}": {cls!r} must be a subclass of {self.base_class.__qualname__}'
                )
            if dataclass is not None and not dataclasses.is_dataclass(dataclass):
                raise PluginError(f'{self.kind} "{name}": config {dataclass!r} is not a dataclass')
            self.entries[name] = Entry(name, cls, dataclass, tuple(aliases))
            for alias in aliases:
                self.aliases[alias] = name
            cls.registered_name = name
            if dataclass is not None:
                cls.config_class = dataclass
            return cls

        return wrap

    def build(self, name_or_config: Any = None, *args, **kwargs) -> Any:
        """Build by name, by a config dataclass instance, or by a dict with a "name" key.

        The built object receives its config (defaults filled) as its first argument when the entry
        has a config dataclass; extra positional/keyword arguments are passed through.
        """
        cfg = None
        if isinstance(name_or_config, dict):
            fields = dict(name_or_config)
            entry = self.get(fields.pop("name", None))
            cfg = make_config(entry, fields, self.kind)
        elif dataclasses.is_dataclass(name_or_config) and not isinstance(name_or_config, type):
            entry = self._entry_for_config(name_or_config)
            cfg = name_or_config
        else:
            entry = self.get(name_or_config)
            if entry.dataclass is not None:
                cfg = entry.dataclass()
        return entry.cls(cfg, *args, **kwargs) if cfg is not None else entry.cls(*args, **kwargs)

    def config_fields(self, name: str) -> set[str]:
        """Option names of a registered component's config dataclass (empty without one)."""
        entry = self.get(name)
        return {field.name for field in dataclasses.fields(entry.dataclass)} if entry.dataclass else set()

    def build_with(self, name: str, options: dict, *args, **kwargs) -> Any:
        """Build `name` with those of `options` its config declares (a plugin's config may declare fewer)."""
        fields = self.config_fields(name)
        config = {"name": self.get(name).name, **{key: value for key, value in options.items() if key in fields}}
        return self.build(config, *args, **kwargs)

    def _entry_for_config(self, cfg) -> Entry:
        self.load_builtins()
        named = getattr(cfg, "name", None)
        if isinstance(named, str) and named in self:
            return self.get(named)
        for entry in self.entries.values():
            if entry.dataclass is type(cfg):
                return entry
        raise PluginError(f"no {self.kind} is registered with config class {type(cfg).__qualname__}")


def make_config(entry: Entry, fields: dict, kind: str):
    if entry.dataclass is None:
        if fields:
            raise PluginError(f'{kind} "{entry.name}" takes no config, got {sorted(fields)}')
        return None
    known = {f.name for f in dataclasses.fields(entry.dataclass)}
    for key in fields:
        if key not in known:
            raise PluginError(
                f'{kind} "{entry.name}" has no option "{key}".{did_you_mean(key, known)} '
                f"Options: {', '.join(sorted(known))}"
            )
    return entry.dataclass(**fields)


REGISTRIES: dict[str, Registry] = {}


def setup_registry(kind: str, base_class: Optional[type] = None, default: Optional[str] = None,
                   builtins: Optional[str] = None):
    """Create the registry of one kind; returns (build_<kind>, register_<kind>, registry). `builtins`: the
    package that registers the built-in entries, imported on first use."""
    if kind in REGISTRIES:
        raise PluginError(f'registry "{kind}" already exists')
    registry = Registry(kind, base_class, default, builtins)
    REGISTRIES[kind] = registry
    return registry.build, registry.register, registry


build_task, register_task, TASK_REGISTRY = setup_registry("task", contracts.BaseTask, builtins="ofasys_fs.tasks")
build_criterion, register_criterion, CRITERION_REGISTRY = setup_registry(
    "criterion", contracts.Criterion, default="label_smoothed_ce", builtins="ofasys_fs.criteria"
)
build_model, register_model, MODEL_REGISTRY = setup_registry(
    "model", contracts.Model, default="generalist", builtins="ofasys_fs.models"
)
build_preprocessor, register_preprocessor, PREPROCESSOR_REGISTRY = setup_registry(
    "preprocessor", contracts.Preprocessor, builtins="ofasys_fs.preprocess"
)
build_adaptor, register_adaptor, ADAPTOR_REGISTRY = setup_registry(
    "adaptor", contracts.Adaptor, builtins="ofasys_fs.adaptors"
)
build_generator, register_generator, GENERATOR_REGISTRY = setup_registry(
    "generator", contracts.Generator, default="sequence", builtins="ofasys_fs.generators"
)
build_vocoder, register_vocoder, VOCODER_REGISTRY = setup_registry(
    "vocoder", contracts.Vocoder, default="griffin_lim", builtins="ofasys_fs.vocoders"
)
build_metric, register_metric, METRIC_REGISTRY = setup_registry(
    "metric", contracts.Metric, builtins="ofasys_fs.metrics"
)
build_optimizer, register_optimizer, OPTIMIZER_REGISTRY = setup_registry(
    "optimizer", contracts.OptimizerFactory, default="adamw", builtins="ofasys_fs.optim"
)
build_lr_scheduler, register_lr_scheduler, LR_SCHEDULER_REGISTRY = setup_registry(
    "lr_scheduler", contracts.LRScheduler, default="polynomial_decay", builtins="ofasys_fs.optim"
)

build_image_tokenizer, register_image_tokenizer, IMAGE_TOKENIZER_REGISTRY = setup_registry(
    "image_tokenizer", contracts.ImageTokenizer, builtins="ofasys_fs.image_tokenizers"
)
build_reranker, register_reranker, RERANKER_REGISTRY = setup_registry(
    "reranker", contracts.Reranker, default="likelihood", builtins="ofasys_fs.generators"
)

# Architectures: name -> function(model config) -> model config with the arch's sizes filled in.
ARCH_REGISTRY: dict[str, Callable] = {}
ARCH_MODEL: dict[str, str] = {}
ARCH_BUILTINS = "ofasys_fs.models.archs"  # registers the built-in presets; imported on first lookup


def load_builtins() -> None:
    """Import every built-in module, so that every registry (and the architectures) is complete."""
    for registry in REGISTRIES.values():
        registry.load_builtins()
    importlib.import_module(ARCH_BUILTINS)


def register_model_architecture(model_name: str, arch_name: str) -> Callable:
    """Register a named size preset for a model (fairseq's --arch)."""

    def wrap(fn: Callable) -> Callable:
        if not fn.__module__.startswith(ARCH_BUILTINS):
            importlib.import_module(ARCH_BUILTINS)  # a plugin's name must not shadow a built-in one
        if arch_name in ARCH_REGISTRY:
            raise PluginError(f'architecture "{arch_name}" is already registered')
        if not callable(fn):
            raise PluginError(f'architecture "{arch_name}" must be a function of the model config')
        ARCH_REGISTRY[arch_name] = fn
        ARCH_MODEL[arch_name] = model_name
        return fn

    return wrap


def get_architecture(arch_name: str) -> Callable:
    """The preset function of an architecture name."""
    importlib.import_module(ARCH_BUILTINS)
    if arch_name not in ARCH_REGISTRY:
        raise PluginError(
            f'unknown architecture "{arch_name}".{did_you_mean(arch_name, ARCH_REGISTRY)} '
            f"Known: {', '.join(sorted(ARCH_REGISTRY))}"
        )
    return ARCH_REGISTRY[arch_name]


def import_package_modules(package_file: str, package_name: str) -> None:
    """Import every module of a package so that its register_* decorators run (built-in discovery)."""
    folder = os.path.dirname(package_file)
    for info in pkgutil.iter_modules([folder]):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")


_USER_DIRS: dict[str, str] = {}  # absolute path -> module name


def import_user_dir(path: str) -> str:
    """Import a plugin package by folder path (fairseq --user-dir); memoised, returns its module name.

    The folder's own name becomes the module name, so it must not shadow an installed package.
    """
    if not path:
        raise PluginError("--user-dir needs a folder path")
    abspath = os.path.realpath(os.path.expanduser(path))  # a linked folder is the same plugin
    if abspath in _USER_DIRS:
        return _USER_DIRS[abspath]
    if not os.path.isdir(abspath):
        raise PluginError(f"--user-dir {path!r}: no such folder ({abspath})")
    if not os.path.isfile(os.path.join(abspath, "__init__.py")):
        raise PluginError(f"--user-dir {path!r}: {abspath} has no __init__.py, so it is not a package")
    module_name = os.path.basename(abspath.rstrip(os.sep))
    existing = sys.modules.get(module_name)
    if existing is not None:
        existing_path = os.path.dirname(os.path.realpath(getattr(existing, "__file__", "") or ""))
        if existing_path != abspath:
            raise PluginError(
                f"--user-dir {path!r}: a module named {module_name!r} is already imported from "
                f"{existing_path}; rename the plugin folder"
            )
    else:
        spec = importlib.util.spec_from_file_location(
            module_name, os.path.join(abspath, "__init__.py"), submodule_search_locations=[abspath]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # the plugin's own error: named with its place, without our traceback
            del sys.modules[module_name]
            raise PluginError(f"--user-dir {path!r}: importing the plugin failed{_place_in(err, abspath)}: "
                                f"{type(err).__name__}: {err}") from err
        except BaseException:
            del sys.modules[module_name]
            raise
    _USER_DIRS[abspath] = module_name
    return module_name


def _place_in(err: Exception, folder: str) -> str:
    """" at FILE, line N": the innermost place inside `folder` where `err` was raised (or its syntax error)."""
    places = [(frame.filename, frame.lineno) for frame in traceback.extract_tb(err.__traceback__)]
    places += [(err.filename, err.lineno)] if isinstance(err, SyntaxError) and err.filename else []
    inside = [(name, line) for name, line in places if os.path.realpath(name).startswith(folder + os.sep)]
    return f" at {inside[-1][0]}, line {inside[-1][1]}" if inside else ""


def imported_user_dirs() -> list[str]:
    """Absolute paths of every user dir imported so far (recorded in checkpoints, re-imported in workers)."""
    return list(_USER_DIRS)


def reimport_user_dirs(paths) -> None:
    """Worker/rank initialiser: import the same plugin folders as the parent process."""
    for path in paths or ():
        import_user_dir(path)
