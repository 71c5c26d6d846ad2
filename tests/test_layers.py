"""Imports go one way: store <- assistant <- editing <- ui and bench, each at the top of its
file. An import inside a function hides a cycle or a layer breach until the function runs, so
only the deliberate ones are allowed: the start-up loader defers the heavy model imports until
after the page is served."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["store", "assistant", "editing"]  # lowest first; ui and bench sit above all three
ABOVE = {"ui", "bench", "tests"}
# (file, imported module): deferred on purpose, with the reason in the code
DEFERRED = {
    ("assistant/runtime.py", "torch"), ("assistant/runtime.py", "assistant.embedder"),
    ("assistant/runtime.py", "assistant.llm"), ("assistant/runtime.py", "assistant.memory"),
    ("assistant/runtime.py", "assistant.router"), ("assistant/runtime.py", "store.backend"),
    # optional: the app starts and answers on torch where the binding is not built
    ("assistant/engine.py", "llama_cpp"),
    # psycopg is needed only for a postgresql:// store; the embedded SQLite store runs without
    ("store/backend.py", "store.postgres"),
    # the throwaway cluster for tests and benches: start_cluster says so where it is missing
    ("store/pg_cluster.py", "psycopg"),
    # the page is built while the loader thread imports transformers: not at import time
    ("amend_ui/handlers.py", "editing.export"),
}


def test_the_page_imports_no_model_code():
    """`ui.py` builds the page while the loader thread imports transformers; the page's own
    imports must not import it a second time from the main thread (the race failed a fresh
    install's first start with "cannot import name 'AutoModelForCausalLM'")."""
    import subprocess
    import sys

    code = ("import sys, amend_ui.page, amend_ui.app\n"
            "print([m for m in ('transformers', 'assistant.llm', 'editing.export', 'gguf') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert out.strip() == "[]", out


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, id(node) in top_level or _guarded(tree, node)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in top_level or _guarded(tree, node)


def _guarded(tree: ast.Module, node: ast.AST) -> bool:
    """An import under a module-level `if TYPE_CHECKING:` counts as top-level."""
    for statement in tree.body:
        if isinstance(statement, ast.If) and "TYPE_CHECKING" in ast.unparse(statement.test):
            if any(child is node for child in ast.walk(statement)):
                return True
    return False


def _modules():
    for layer in LAYERS:
        for path in sorted((REPO / layer).rglob("*.py")):
            yield layer, path, path.relative_to(REPO).as_posix()


def test_no_layer_imports_one_above_it():
    breaches = []
    for layer, path, name in _modules():
        allowed = set(LAYERS[:LAYERS.index(layer) + 1])
        for module, _ in _imports(path):
            package = module.split(".")[0]
            if package in ABOVE or (package in LAYERS and package not in allowed):
                breaches.append(f"{name} imports {module}")
    assert not breaches, breaches


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycles():
    """Module-level imports between project modules form no cycle, so any module can be
    imported first (`python -c "import editing.promote"` as well as via the app)."""
    names = {_module_name(path): path for _, path, _ in _modules()}
    graph = {name: {m for m, at_top in _imports(path) if at_top and m in names}
             for name, path in names.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                return path + [name, target]
            if target not in state and (cycle := visit(target, path + [name])):
                return cycle
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name, [])
            assert cycle is None, " -> ".join(cycle)


def test_imports_sit_at_the_top_of_their_file():
    inner = [f"{name} imports {module} inside a function"
             for _, path, name in _modules() for module, at_top in _imports(path)
             if not at_top and (name, module) not in DEFERRED]
    assert not inner, inner
