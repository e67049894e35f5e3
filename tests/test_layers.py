"""Dependencies point one way, checked on the source of every module.

Each layer lists what it may depend on, and the check follows imports transitively (an allowed
module that imports a forbidden one is a violation too). Imports inside functions and under
TYPE_CHECKING count. ``import telnyx_nb`` or ``from telnyx_nb import <name>`` depends on the
package facade, which imports everything: only the top layer (``__init__``, ``cli``, ``demo``)
may do that.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import telnyx_nb

PACKAGE = Path(telnyx_nb.__file__).parent
ROOT = "telnyx_nb"

_RECEIVER_SIDE = ("receiver", "capture", "ingest", "udp", "events", "outbound", "session", "store", "audio",
                  "quality", "latency", "talk", "emodel", "defaults", "errors", "loopthread", "wire", "pcap", "reprs",
                  "labels")

#: layer -> the layers (module or package names under telnyx_nb) it may depend on, itself included.
ALLOWED: dict[str, tuple[str, ...]] = {
    "wire": ("wire",),
    "emodel": ("emodel",),
    "loopthread": ("loopthread",),
    "reprs": ("reprs",),
    "labels": ("labels",),
    "defaults": ("defaults", "wire"),
    "errors": ("errors", "wire"),
    "env": ("env", "errors", "wire"),
    "sandbox": ("sandbox", "wire", "emodel", "loopthread", "reprs", "labels"),
    "store": ("store", "defaults", "labels", "wire"),
    "quality": ("quality", "latency", "talk", "audio", "emodel", "defaults", "labels", "wire"),
    "latency": ("latency", "talk", "audio", "defaults", "labels", "wire"),
    "talk": ("talk", "audio", "defaults", "wire"),
    "audio": ("audio", "defaults", "wire"),
    "events": ("events", "defaults", "wire"),
    "outbound": ("outbound", "errors", "wire"),
    "ingest": ("ingest", "events", "outbound", "store", "udp", "errors", "defaults", "labels", "wire"),
    "udp": ("udp",),
    "pcap": ("pcap",),
    "session": ("session", "store", "audio", "quality", "latency", "talk", "emodel", "udp", "errors", "defaults",
                "labels", "wire", "pcap", "reprs"),
    "receiver": _RECEIVER_SIDE,
    "capture": tuple(layer for layer in _RECEIVER_SIDE
                     if layer not in ("receiver", "session", "quality", "latency", "talk", "audio")),
    "actions": ("actions", *_RECEIVER_SIDE),
    "widgets": ("widgets", "actions", *_RECEIVER_SIDE),
    "plots": ("plots", *_RECEIVER_SIDE),
}
#: The top layer: the public facade and the command line, which may use everything.
TOP = ("telnyx_nb", "telnyx_nb.cli", "telnyx_nb.demo")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(PACKAGE.rglob("*.py"))
NAMES = {module_name(p) for p in MODULES}


def _resolve(name: str) -> str:
    """The module ``name`` refers to: itself, or the nearest enclosing module that exists."""
    while name not in NAMES and "." in name:
        name = name.rpartition(".")[0]
    return name


def direct_imports(path: Path, names: set[str] = NAMES) -> set[str]:
    """The telnyx_nb modules ``path`` imports, with the subpackages whose ``__init__`` runs."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == ROOT)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == ROOT:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in names else node.module)
    deps = set()
    for name in found:
        name = _resolve(name)
        deps.add(name)
        parts = name.split(".")
        deps.update(".".join(parts[:i]) for i in range(2, len(parts)))   # subpackage __init__s, not the root
    return deps


GRAPH = {module_name(p): direct_imports(p) for p in MODULES}


def closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        for dep in GRAPH.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    seen.discard(name)
    return seen


def layer(name: str) -> str:
    return name.split(".")[1] if name != ROOT else ROOT


def test_every_module_has_a_layer_and_is_checked():
    assert len(MODULES) > 30
    unruled = sorted(n for n in NAMES if n not in TOP and layer(n) not in ALLOWED)
    assert not unruled, f"modules without a layer rule: {unruled}"


@pytest.mark.parametrize("name", sorted(n for n in NAMES if n not in TOP))
def test_imports_point_one_way(name):
    allowed = {f"{ROOT}.{part}" for part in ALLOWED[layer(name)]}
    bad = sorted(dep for dep in closure(name)
                 if dep == ROOT or not any(dep == a or dep.startswith(a + ".") for a in allowed))
    assert not bad, f"{name} depends on {bad}; layer {layer(name)!r} may use only {ALLOWED[layer(name)]}"


def test_the_checker_follows_imports_transitively(tmp_path):
    """The rule engine itself: an indirect path to a forbidden layer is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("import telnyx_nb.cli\nfrom telnyx_nb import quality\nfrom telnyx_nb.store import tables\n")
    deps = direct_imports(bad)
    assert deps >= {"telnyx_nb.cli", "telnyx_nb.quality", "telnyx_nb.store.tables", "telnyx_nb.store"}
    assert "telnyx_nb.sandbox" in closure("telnyx_nb.cli")          # so cli is off limits below the top
    facade = tmp_path / "facade.py"
    facade.write_text("import telnyx_nb\nfrom telnyx_nb import Receiver\n")
    assert direct_imports(facade) == {"telnyx_nb"}
