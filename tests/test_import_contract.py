"""The import contract of DESIGN.md, checked on the source tree.

Imports point one way: trust_bundle imports no other meshfed package; the gateway
and the sync agent never import each other and reach into federation only through
its model and client; the Kubernetes client lives only under discovery_sync,
FastAPI only in the dashboard API modules, gRPC servers only in the control plane;
the domain model is pure (no store, no I/O libraries).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("federation", "eastwest_gateway", "discovery_sync", "trust_bundle")
# Libraries that do I/O: the pure domain model must not reach for them.
IMPURE = ("sqlalchemy", "grpc", "etcd3aio", "fastapi", "asyncio", "socket", "kubernetes")
FEDERATION_PUBLIC = ("federation.model", "federation.client", "federation.errors")


def modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(p for p in rel.parts if p != "__init__")
            yield name, path


def imports_of(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.split(".")
                is_pkg = path.name == "__init__.py"
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(module: str, imported: set[str]) -> list[str]:
    top = module.split(".")[0]
    bad: list[str] = []
    for name in sorted(imported):
        if top == "trust_bundle" and under(
            name, "federation", "eastwest_gateway", "discovery_sync"
        ):
            bad.append(f"trust_bundle must not import {name}")
        if top == "eastwest_gateway" and under(name, "discovery_sync"):
            bad.append(f"eastwest_gateway must not import {name}")
        if top == "discovery_sync" and under(name, "eastwest_gateway"):
            bad.append(f"discovery_sync must not import {name}")
        if (
            top in ("eastwest_gateway", "discovery_sync")
            and under(name, "federation")
            and name != "federation"
            and not under(name, *FEDERATION_PUBLIC)
        ):
            bad.append(f"{top} may use federation only through its model/client, not {name}")
        if under(name, "kubernetes", "kubernetes_asyncio") and top != "discovery_sync":
            bad.append(f"the Kubernetes client belongs in discovery_sync, not {module}")
        if under(name, "fastapi", "starlette") and not under(module, "federation.api"):
            bad.append(f"FastAPI belongs in federation.api, not {module}")
        if (
            under(module, "federation.model", "federation.errors")
            and under(name, *PACKAGES, *IMPURE)
            and not under(name, "federation.model", "federation.errors")
            and name != "federation"
        ):
            bad.append(f"the domain model must stay pure; {module} imports {name}")
    return bad


def grpc_server_violations(module: str, path: Path) -> list[str]:
    source = path.read_text()
    if ("grpc.aio.server(" in source or "grpc.server(" in source) and not under(
        module, "federation.controlplane"
    ):
        return [f"gRPC servers belong in federation.controlplane, not {module}"]
    return []


ALL = list(modules())


def test_the_tree_has_modules_to_check() -> None:
    names = {name for name, _ in ALL}
    assert {"federation.model.topology", "federation.store.typed"} <= names


@pytest.mark.parametrize(("module", "path"), ALL, ids=[m for m, _ in ALL])
def test_module_respects_the_import_contract(module: str, path: Path) -> None:
    problems = violations(module, imports_of(path, module)) + grpc_server_violations(module, path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "imported", "expected"),
    [
        ("trust_bundle.ca", {"federation.model"}, "trust_bundle must not import"),
        ("eastwest_gateway.x", {"discovery_sync.dns"}, "must not import"),
        ("discovery_sync.x", {"eastwest_gateway.ranking"}, "must not import"),
        ("eastwest_gateway.x", {"federation.store.sql"}, "only through its model"),
        ("federation.store.sql", {"kubernetes.client"}, "Kubernetes client"),
        ("federation.cli", {"fastapi"}, "FastAPI belongs"),
        ("federation.model.records", {"sqlalchemy"}, "must stay pure"),
    ],
)
def test_the_checker_catches_each_kind_of_violation(
    module: str, imported: set[str], expected: str
) -> None:
    assert any(expected in v for v in violations(module, imported))


def test_the_checker_allows_what_design_allows() -> None:
    assert violations("eastwest_gateway.x", {"federation.model", "trust_bundle.svid"}) == []
    assert violations("discovery_sync.k8s", {"kubernetes.watch", "federation.client"}) == []
    assert violations("federation.api.app", {"fastapi"}) == []
