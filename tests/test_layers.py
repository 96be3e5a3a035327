"""The package's layers depend one way (docs/design.md, "Layers"): every import of an ofasys_fs module, at the top
of a file or inside a function, points to the same layer or a lower one, and no two modules or subpackages import
each other, directly or in a circle. Inference never imports the training engine, and nothing imports the fairseq
plugin, so that fairseq stays optional."""
import ast
import json
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "ofasys_fs"

# The layer of each subpackage or top-level module; anything not named here is the core (layer 0).
LAYERS = {
    "cli": 4, "fairseq_plugin": 4,
    "engine": 3,
    "inference": 2, "hub": 2,
    "tasks": 1, "data": 1, "preprocess": 1, "adaptors": 1, "models": 1, "criteria": 1, "generators": 1,
    "metrics": 1, "optim": 1, "assets": 1, "motion": 1, "diffusion": 1, "pretrained": 1, "vocoders": 1,
    "image_tokenizers": 1,
}
LAYER_NAMES = {0: "core", 1: "components", 2: "inference", 3: "engine", 4: "cli"}
OPTIONAL_TOP = "fairseq_plugin"  # imports fairseq (an optional extra): a top layer nothing imports
# Imports inside functions, each with the reason it is not at the top of its file (never a cycle).
LOCAL_IMPORTS = {
    ("ofasys_fs.generators.sequence", "ofasys_fs.generators.fused_step"): "imports Triton, only when asked for",
}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The subpackage or top-level module a module belongs to ("" for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer(module: str) -> int:
    return LAYERS.get(unit(module), 0)


def imports_of(path: pathlib.Path) -> list[tuple[str, bool]]:
    """(imported ofasys_fs module, whether the import sits inside a function) for every import of the file."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            names = []
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[:len(package.split(".")) - child.level + 1]
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module or ""
                names = [source] if child.module else [f"{source}.{alias.name}" for alias in child.names]
            elif isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            found.extend((name, nested) for name in names if name.split(".")[0] == "ofasys_fs")
            visit(child, nested)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def import_graph() -> dict[str, list[tuple[str, bool]]]:
    return {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def cycle_in(edges: dict[str, set]) -> list:
    """One cycle of the directed graph as a list of nodes (first == last), or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(node: str, path: list) -> list:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := walk(target, path + [target])):
                return found
        state[node] = 2
        return []

    for start in sorted(edges):
        if start not in state and (found := walk(start, [start])):
            return found
    return []


def test_every_import_points_to_the_same_or_a_lower_layer():
    upward = [f"{module} ({LAYER_NAMES[layer(module)]}) imports {target} ({LAYER_NAMES[layer(target)]})"
              for module, imports in import_graph().items() for target, _ in imports
              if layer(target) > layer(module)]
    assert upward == []


def test_no_import_circle_between_modules_or_subpackages():
    graph = import_graph()
    known = set(graph)
    resolved = {module: {target if target in known else target.rpartition(".")[0] for target, _ in imports}
                for module, imports in graph.items()}
    assert cycle_in({module: targets - {module} for module, targets in resolved.items()}) == []
    packages: dict[str, set] = {}
    for module, targets in resolved.items():
        packages.setdefault(unit(module), set()).update(unit(target) for target in targets if unit(target) != unit(module))
    packages.pop("", None)  # the package itself only re-exports (lazily) and registers
    assert cycle_in({name: targets - {""} for name, targets in packages.items()}) == []


def test_imports_inside_functions_are_only_the_listed_optional_ones():
    local = {(module, target) for module, imports in import_graph().items() for target, inside in imports if inside}
    assert local == set(LOCAL_IMPORTS)


@pytest.mark.parametrize("check", ["layering", "circle"])
def test_the_checks_fail_on_an_upward_import_and_a_circle(check, monkeypatch):
    """The two checks above are not vacuous: an injected upward import and an injected circle are found."""
    graph = import_graph()
    if check == "layering":
        graph["ofasys_fs.models.generalist"].append(("ofasys_fs.engine.trainer", False))
        monkeypatch.setattr(sys.modules[__name__], "import_graph", lambda: graph)
        with pytest.raises(AssertionError, match="ofasys_fs.models.generalist .components. imports "
                                                 "ofasys_fs.engine.trainer .engine."):
            test_every_import_points_to_the_same_or_a_lower_layer()
    else:
        graph["ofasys_fs.data.rows"].append(("ofasys_fs.tasks.base", False))
        monkeypatch.setattr(sys.modules[__name__], "import_graph", lambda: graph)
        with pytest.raises(AssertionError):
            test_no_import_circle_between_modules_or_subpackages()


def test_nothing_imports_the_fairseq_plugin():
    importers = sorted(module for module, imports in import_graph().items() if unit(module) != OPTIONAL_TOP
                       for target, _ in imports if unit(target) == OPTIONAL_TOP)
    assert importers == []


def test_importing_every_module_but_the_fairseq_plugin_never_imports_fairseq():
    names = sorted(module for module in import_graph() if unit(module) != OPTIONAL_TOP)
    script = (f"import importlib, json, sys\nfor name in {names!r}:\n    importlib.import_module(name)\n"
              "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('fairseq', 'fairseq_cli', 'hydra', 'omegaconf'))))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent)
    assert len(names) > 100 and json.loads(loaded.stdout.splitlines()[-1]) == []


def test_inference_does_not_import_the_training_engine(trained_checkpoint):
    """`from ofasys_fs import OFASys` and loading a checkpoint for inference leave the engine unimported."""
    script = ("import json, sys\nfrom ofasys_fs import OFASys\n"
              f"model = OFASys.from_pretrained({trained_checkpoint.path!r}, device='cpu')\n"
              "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('ofasys_fs.engine', 'ofasys_fs.cli')))))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent)
    assert json.loads(loaded.stdout.splitlines()[-1]) == []
