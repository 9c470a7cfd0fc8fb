"""Issue 24: the package's imports run one way, down its layers, and never in a circle. Every
import counts, at the top of a module or inside a function (a lazy import is still a
dependency); only `if TYPE_CHECKING:` imports, which never run, are left out."""

import ast
import fnmatch
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "dlbench"

# lowest first: a module may import its own layer and those below (docs/design.md draws them)
LAYERS = [
    ["errors", "terminal", "typecheck", "paramdocs", "checksums"],
    [
        "rundir",
        "files",
        "safety",
        "registry",
        "values",
        "torch_components",
        "config",
        "validation",
        "config_store",
        "searchpath",
        "plugins",
        "resume",
    ],
    ["engine.*", "figures", "logged"],
    ["data.*", "models.*", "tasks.*"],
    ["build", "compose", "preflight"],
    ["training", "summary", "launch", "announce", "report"],
    ["api", "show", "cli", "__main__", "commands.*"],
]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The dlbench modules a module imports (as names relative to the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: max(0, len(package.split(".")) - node.level + 1)] if package else []
                base = ".".join([*up, base] if base else up)
                base = f"dlbench.{base}" if base else "dlbench"
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            if target == "dlbench" or not target.startswith("dlbench."):
                continue
            target = target.removeprefix("dlbench.")
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def layer_of(name: str) -> int | None:
    for i, patterns in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return i
    return None


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_ones():
    edges = graph()
    unplaced = sorted(n for n in edges if n and "." not in n and layer_of(n) is None and n not in LAYER_FREE)
    assert not unplaced, f"modules in no layer (add them to LAYERS): {unplaced}"
    upward = sorted(
        f"{name} -> {dep}"
        for name, deps in edges.items()
        for dep in deps
        if layer_of(name) is not None and layer_of(dep) is not None and layer_of(dep) > layer_of(name)
    )
    assert not upward, f"imports from a lower layer to a higher one: {upward}"


LAYER_FREE = {"", "configs", "engine", "data", "models", "tasks", "commands"}  # packages' empty inits


def test_no_module_imports_itself_through_others():
    edges = graph()
    cycles = []
    for start in edges:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for dep in edges.get(node, ()):
                if dep == start:
                    cycles.append(" -> ".join([*path, start]))
                elif dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*path, dep]))
    assert not cycles, f"import cycles: {sorted(set(cycles))[:10]}"
