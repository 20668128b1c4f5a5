"""The module map stays as docs/architecture.md draws it, checked from the source with ast (nothing imported):
no tool imports another tool, the shared library has no import cycle, and the cot checker never imports the
writer it checks."""

import ast

import pytest

from conftest import REPO

TOOLS = REPO / "tools"
LIB = TOOLS / "lorakit"


def _imports(path):
    """Module names a file imports (anywhere in it, lazy imports included), relative ones resolved in lorakit."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # `from .x import y` / `from . import y` inside lorakit
                base = "lorakit" + ("." + node.module if node.module else "")
                out.add(base)
                if not node.module:
                    out.update("lorakit." + alias.name for alias in node.names)
            else:
                out.add(node.module)
                out.update("%s.%s" % (node.module, alias.name) for alias in node.names)
    return out


TOOL_NAMES = sorted(p.stem for p in TOOLS.glob("*.py"))
LIB_NAMES = sorted("lorakit." + p.stem for p in LIB.glob("*.py") if p.stem != "__init__")


def test_the_source_is_where_the_test_looks():
    assert {"verify", "package", "predict", "finetune"} <= set(TOOL_NAMES)
    assert {"lorakit.checks", "lorakit.contest", "lorakit.layout", "lorakit.records"} <= set(LIB_NAMES)


@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_no_tool_imports_another_tool(tool):
    """Tools share code through lorakit only (a tool may run another as a subprocess, never import it)."""
    imported = _imports(TOOLS / (tool + ".py"))
    others = sorted(set(TOOL_NAMES) & {name.split(".")[0] for name in imported} - {tool})
    assert others == [], "tools/%s.py imports the tool(s) %s" % (tool, others)


def _lib_graph():
    graph = {}
    for name in LIB_NAMES:
        deps = {d for d in _imports(LIB / (name.split(".", 1)[1] + ".py")) if d in LIB_NAMES}
        graph[name] = deps - {name}
    return graph


def _cycle(graph):
    """One import cycle of the graph as a list of names, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep, path + [dep])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_lorakit_has_no_import_cycle():
    graph = _lib_graph()
    assert sum(len(d) for d in graph.values()) > 20  # the graph was read (modules import each other)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    """The finder the previous test trusts, on the cycle issue 14 removed (cot -> families -> cot)."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_lorakit_never_imports_a_tool():
    for name in LIB_NAMES:
        tools = {d.split(".")[0] for d in _imports(LIB / (name.split(".", 1)[1] + ".py"))} & set(TOOL_NAMES)
        assert not tools, "%s imports the tool(s) %s" % (name, sorted(tools))


def test_cot_checker_never_imports_the_writer():
    assert "lorakit.cot_write" not in _lib_graph()["lorakit.cot_check"]
    assert "lorakit.cot_check" not in _lib_graph()["lorakit.cot_write"]
