"""The package is built in layers: every module imports only from its own layer or below, and nothing in a circle.

The graph is read from the source (ast), so a function-level import counts as much as one at the top.
"""
import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parent.parent / "vae_utils"

# Lower numbers sit lower. A new module needs a line here: the test names any module without one.
LAYERS = {
    "base": ["files", "repro", "distributed", "registry", "config", "configfile", "capabilities", "checkpoints",
             "hub", "zoo", "plotting"],
    "data": ["images", "dsprites", "data"],
    "nets": ["losses", "nets", "subpixel", "importance"],
    "models": ["models", "models.*"],
    "evaluation": ["metrics", "features", "inception", "reconstruction", "latent", "samplers", "disentanglement",
                   "report", "grids"],
    "training": ["compiling", "rundir", "runlog", "threads", "training"],
    "interface": ["options", "commands", "pictures", "cli", "__main__", "__init__"],
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> int:
    for rank, names in enumerate(LAYERS.values()):
        if module in names or any(n.endswith(".*") and module.startswith(n[:-1]) for n in names):
            return rank
    raise KeyError(module)


def _imports(path: Path) -> set[str]:
    """The vae_utils modules that the file at path imports (relative or absolute, anywhere in the file)."""
    module = _module_name(path)
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    if module == "__init__":
        package = []
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("vae_utils"):
                target = node.module.removeprefix("vae_utils").lstrip(".")
            else:
                continue
            names = [a.name for a in node.names]
            for name in names:  # `from . import models` names a module, `from .x import y` a name in x
                candidate = f"{target}.{name}" if target else name
                found.add(candidate if _exists(candidate) else target)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("vae_utils.") for a in node.names if a.name.startswith("vae_utils.")}
    return {m for m in found if m and m != module}


def _exists(module: str) -> bool:
    path = PACKAGE.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    """Module -> the vae_utils modules it imports."""
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer():
    missing = [m for m in import_graph() if not _safe_layer(m)]
    assert not missing, f"add these modules to LAYERS in {Path(__file__).name}: {missing}"


def _safe_layer(module: str) -> bool:
    try:
        _layer(module)
    except KeyError:
        return False
    return True


def test_modules_import_only_their_own_layer_or_below():
    graph = import_graph()
    upward = [f"{m} ({_layer_name(m)}) imports {t} ({_layer_name(t)})"
              for m, targets in graph.items() for t in sorted(targets) if _layer(t) > _layer(m)]
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def _layer_name(module: str) -> str:
    return list(LAYERS)[_layer(module)]


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle of imports as [a, b, ..., a], or [] when the graph has none (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> list[str]:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target, [*path, target])
                if cycle:
                    return cycle
        state[module] = 2
        return []

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return []


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_checks_catch_a_planted_upward_import_and_a_planted_cycle():
    graph = import_graph()
    assert "registry" in graph["checkpoints"] and "files" in graph["checkpoints"]  # the reader sees real edges
    assert "models.vqvae" in graph["models.prior"] and "models.vae" in graph["__init__"]
    planted = {**graph, "config": graph["config"] | {"training"}}
    assert ("config", "training") in [(m, t) for m, ts in planted.items() for t in ts if _layer(t) > _layer(m)]
    assert find_cycle(planted)[0] in ("config", "training") or "config" in find_cycle(planted)
