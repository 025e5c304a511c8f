"""The library knows nothing of the demo: ``mdsr`` imports without Gradio, and none of its modules
imports the demo's side (``app``, ``demo``)."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys

from conftest import ROOT

import mdsr

MODULES = sorted(f"mdsr.{m.name}" for m in pkgutil.iter_modules(mdsr.__path__) if m.name != "__main__")


def test_every_library_module_imports_where_gradio_cannot_be_imported():
    code = f"import sys; sys.modules['gradio'] = None; sys.modules['gradio_client'] = None\nimport {', '.join(MODULES)}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def test_no_library_module_imports_the_demo_or_a_web_framework():
    for path in (ROOT / "mdsr").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            roots = {n.split(".")[0] for n in names}
            assert not roots & {"app", "demo", "gradio", "gradio_client", "fastapi", "starlette"}, (path.name, roots)
