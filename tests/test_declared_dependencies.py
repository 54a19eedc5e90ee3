"""Every third-party module the package imports belongs to a distribution pyproject.toml declares.

A module that arrives only as another package's dependency can vanish with that package's next
release; the installed package would then fail at import on a fresh machine.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "azure_agent_mcp"
# azure.* namespaces whose third level is the distribution (azure.mgmt.resource, azure.monitor.query)
_AZURE_FAMILIES = {"mgmt", "keyvault", "monitor"}


def _imported_modules() -> dict[str, set[str]]:
    """top-level or azure.* module -> files importing it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                depth = 3 if parts[0] == "azure" and len(parts) > 2 and parts[1] in _AZURE_FAMILIES else 2
                key = ".".join(parts[:depth]) if parts[0] == "azure" else parts[0]
                found.setdefault(key, set()).add(str(path.relative_to(ROOT)))
    return found


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower().replace("_", "-") for r in requirements}


def _distributions_of(module: str) -> set[str]:
    """The distributions that install this module (for azure.*, the one owning that sub-package)."""
    top = module.split(".")[0]
    candidates = {d.lower() for d in packages_distributions().get(top, [])}
    if top != "azure":
        return candidates
    from importlib.metadata import distribution

    owners = set()
    prefix = module.replace(".", "/") + "/"
    for name in candidates:
        files = distribution(name).files or []
        if any(str(f).startswith(prefix) for f in files):
            owners.add(name)
    return owners


def test_every_imported_distribution_is_declared():
    declared = _declared()
    undeclared = {}
    for module, files in _imported_modules().items():
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top == "azure_agent_mcp":
            continue
        owners = _distributions_of(module)
        assert owners, f"{module} (imported by {sorted(files)}) is not installed"
        if not owners & declared:
            undeclared[module] = (sorted(owners), sorted(files))
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


# OpenTelemetry Python publishes its logs signal (the LoggerProvider, the batch processor, SeverityNumber)
# only under these underscore names, status Development; they are its documented logs API, and the
# brief asks for a LoggerProvider with a BatchLogRecordProcessor. Nothing else is allowed.
_PUBLISHED_UNDER_UNDERSCORE = {"opentelemetry._logs", "opentelemetry.sdk._logs", "opentelemetry.sdk._logs.export"}


def _full_imports() -> dict[str, set[str]]:
    """Every absolutely imported module by its full dotted name -> files importing it."""
    found: dict[str, set[str]] = {}
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_no_private_sdk_module_is_imported():
    private = {}
    for module, files in _full_imports().items():
        if module in _PUBLISHED_UNDER_UNDERSCORE:
            continue
        if module.split(".")[0] in ("mcp", "azure", "msal", "opentelemetry") and any(
            part.startswith("_") for part in module.split(".")[1:]
        ):
            private[module] = sorted(files)
    assert not private, f"private SDK modules imported: {private}"


def test_no_private_name_is_imported_from_an_sdk():
    """`from msal.token_cache import _compute_ext_cache_key` is as private as a private module."""
    private = {}
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.split(".")[0] in ("mcp", "azure", "msal", "msal_extensions", "opentelemetry") \
                    and node.module not in _PUBLISHED_UNDER_UNDERSCORE:
                for alias in node.names:
                    if alias.name.startswith("_"):
                        private.setdefault(f"{node.module}.{alias.name}", []).append(str(path.relative_to(ROOT)))
    assert not private, f"private SDK names imported: {private}"


def test_the_private_module_check_sees_submodules():
    """The check reads full names: a `from mcp.shared._x import y` would be caught, not keyed as `mcp`."""
    imports = _full_imports()
    assert "mcp.server.mcpserver" in imports and "opentelemetry.sdk._logs" in imports
