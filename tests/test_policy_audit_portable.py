"""The package imports, appends and verifies without ``fcntl`` (Windows has none).

How the test denies ``fcntl`` and why it is honest about what it proves:

portalocker is the cross-platform library that locks for us; on POSIX it imports ``fcntl`` itself
(on Windows its other branch uses ``msvcrt``), so making ``fcntl`` vanish for every module would
only prove that portalocker's POSIX branch needs it. Instead the child interpreter replaces
``builtins.__import__`` and ``importlib.import_module`` with guards that raise ImportError for
``fcntl`` (and its submodules) unless the importer is on a short, explicit list of third-party
modules that import it on POSIX only and have a Windows branch of their own (portalocker, and the
MCP SDK's stdio transport). The guard sees *every* import statement, cached or not, so a module
of ours, or a new dependency that needs ``fcntl`` unconditionally, fails the test, while the
locking that portalocker does works. What it cannot prove is that portalocker's Windows branch
works: that is portalocker's own CI. The child then imports every module of ``azure_agent_mcp`` (but ``__main__``, which would
run the command line), appends from two writers,
closes and verifies. A static scan of the sources adds what imports alone cannot see: no import
of ``fcntl`` anywhere in the package, not even inside a function that was never called.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import azure_agent_mcp
from audit_helpers import isolated_state  # noqa: F401

GUARDED_CHILD = r'''
import builtins, importlib, json, pkgutil, sys

sys.modules.pop("fcntl", None)
denied = []
real_import = builtins.__import__
real_import_module = importlib.import_module


# Third-party modules that import fcntl on POSIX only, with a Windows branch of their own:
# portalocker (msvcrt there), mcp.server.stdio (``if sys.platform != "win32"``).
PLATFORM_GATED = ("portalocker", "mcp.server.stdio")


def _allowed(importer):
    return any(importer == gated or importer.startswith(gated + ".") for gated in PLATFORM_GATED)


def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and (name == "fcntl" or name.startswith("fcntl.")):
        importer = (globals or {}).get("__name__", "?")
        if not _allowed(importer):
            denied.append(importer)
            raise ImportError(f"fcntl is not available here (imported by {importer})")
    return real_import(name, globals, locals, fromlist, level)


def guarded_import_module(name, package=None):
    if name == "fcntl" or name.startswith("fcntl."):
        importer = sys._getframe(1).f_globals.get("__name__", "?")
        if not _allowed(importer):
            denied.append(importer)
            raise ImportError(f"fcntl is not available here (imported by {importer})")
    return real_import_module(name, package)


builtins.__import__ = guarded_import
importlib.import_module = guarded_import_module

import azure_agent_mcp

failed = {}
for module in pkgutil.walk_packages(azure_agent_mcp.__path__, "azure_agent_mcp."):
    if module.name.endswith(".__main__"):
        continue  # runs the command line; its imports are cli's, imported here anyway
    try:
        importlib.import_module(module.name)
    except ImportError as exc:
        failed[module.name] = str(exc)

from azure_agent_mcp.policy import AuditLog, verify_audit

path = sys.argv[1]
first, second = AuditLog(path), AuditLog(path)
first.append({"kind": "request", "n": 1})
second.append({"kind": "request", "n": 2}, durable=False)
first.close()
second.close()
result = verify_audit([path])
print(json.dumps({"failed": failed, "denied": denied, "ok": result.ok, "records": result.records,
                  "closed": result.closed, "portalocker": "portalocker" in sys.modules}))
'''


def test_the_package_works_without_fcntl(tmp_path):
    done = subprocess.run([sys.executable, "-c", GUARDED_CHILD, str(tmp_path / "audit.jsonl")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}
    # others may ask and cope (the standard library's subprocess falls back when fcntl is missing)
    assert not [importer for importer in report["denied"] if importer.startswith("azure_agent_mcp")]
    assert report["portalocker"] and report["ok"] and report["records"] == 2 and report["closed"]


def test_no_module_of_the_package_imports_fcntl():
    root = Path(azure_agent_mcp.__file__).parent
    offenders = []
    for source in root.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
                names = [str(node.args[0].value)]
            if any(name == "fcntl" or name.startswith("fcntl.") for name in names):
                offenders.append(f"{source.relative_to(root)}:{node.lineno}")
    assert offenders == []
