"""Dependencies point one way: checked on the source of every module (imports inside functions
and under TYPE_CHECKING count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import telnyx_nb

PACKAGE = Path(telnyx_nb.__file__).parent

#: Modules that import nothing of telnyx_nb but ``wire`` (so every layer, the sandbox
#: included, may use them).
SHARED = ("telnyx_nb.wire", "telnyx_nb.emodel", "telnyx_nb.loopthread", "telnyx_nb.defaults")

#: (modules, what they must not import, why)
RULES = [
    ("telnyx_nb.wire", lambda dep: not dep.startswith("telnyx_nb.wire"), "wire is the bottom layer"),
    ("telnyx_nb.emodel", lambda dep: True, "a pure leaf module"),
    ("telnyx_nb.loopthread", lambda dep: True, "a pure leaf module"),
    ("telnyx_nb.defaults", lambda dep: True, "a pure leaf module"),
    ("telnyx_nb.sandbox", lambda dep: not dep.startswith(("telnyx_nb.sandbox", *SHARED)),
     "the sandbox uses only wire, the shared leaf modules and itself"),
    ("telnyx_nb.store", lambda dep: dep.startswith(("telnyx_nb.quality", "telnyx_nb.session", "telnyx_nb.receiver",
                                                    "telnyx_nb.ingest", "telnyx_nb.sandbox")),
     "storage never imports analytics, the read facade or the I/O"),
    ("telnyx_nb.receiver", lambda dep: dep.startswith("telnyx_nb.sandbox"), "the receiver never imports the sandbox"),
    ("telnyx_nb.ingest", lambda dep: dep.startswith(("telnyx_nb.sandbox", "telnyx_nb.quality", "telnyx_nb.session")),
     "the I/O layer stores; it does not analyse"),
    ("telnyx_nb.events", lambda dep: dep.startswith("telnyx_nb.sandbox"), "the receiver never imports the sandbox"),
    ("telnyx_nb.outbound", lambda dep: dep.startswith("telnyx_nb.sandbox"), "the receiver never imports the sandbox"),
    ("telnyx_nb.session", lambda dep: dep.startswith(("telnyx_nb.sandbox", "telnyx_nb.receiver", "telnyx_nb.ingest")),
     "the read facade reads tables; it has no I/O"),
    ("telnyx_nb.quality", lambda dep: dep.startswith(("telnyx_nb.sandbox", "telnyx_nb.receiver", "telnyx_nb.store",
                                                      "telnyx_nb.session")),
     "analytics work on DataFrames only"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every telnyx_nb module ``path`` imports (``from a import b`` counts as ``a.b`` too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "telnyx_nb" or name.startswith("telnyx_nb.")}


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_checked():
    assert len(MODULES) > 30
    assert {module_name(p) for p in MODULES} >= {"telnyx_nb.wire.stream", "telnyx_nb.store.tables", "telnyx_nb.session"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_point_one_way(path):
    name = module_name(path)
    deps = imports(path)
    for scope, forbidden, why in RULES:
        if name == scope or name.startswith(scope + "."):
            bad = sorted(dep for dep in deps if dep != "telnyx_nb" and forbidden(dep))
            assert not bad, f"{name} imports {bad}: {why}"
            if scope == "telnyx_nb.wire":
                assert "telnyx_nb" not in deps, f"{name} imports the telnyx_nb package itself"


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The rule engine itself: a module importing analytics from storage is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from telnyx_nb import quality\nimport telnyx_nb.receiver as r\n")
    assert imports(bad) >= {"telnyx_nb.quality", "telnyx_nb.receiver"}
    store_rule = next(rule for scope, rule, _ in RULES if scope == "telnyx_nb.store")
    assert store_rule("telnyx_nb.quality") and not store_rule("telnyx_nb.wire.codecs")
