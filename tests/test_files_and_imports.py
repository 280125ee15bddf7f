"""Atomic writes, the cross-platform lock, and a package that imports where POSIX-only modules do not exist."""
from __future__ import annotations

import ast
import importlib.util
import pkgutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import iresnet_mini
from iresnet_mini import files

# every module, the lessons' companions included
MODULES = sorted(m.name for m in pkgutil.walk_packages(iresnet_mini.__path__, "iresnet_mini.") if not m.ispkg)


POSIX_ONLY = {"fcntl", "termios", "pwd", "grp", "resource", "posix", "pty", "tty"}


def test_every_module_imports_without_fcntl():
    # As on Windows: fcntl cannot be imported. The third-party packages are imported first (on POSIX some of
    # them use fcntl, on Windows they use other modules); then each of ours is imported with fcntl hidden.
    code = ("import sys\n"
            "import IPython, ipywidgets, matplotlib.pyplot, nbclient, nbformat, numpy, seaborn, torch, tqdm\n"
            "sys.modules['fcntl'] = None\n"
            f"for module in {MODULES!r}:\n"
            "    __import__(module)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(MODULES) >= 20


@pytest.mark.parametrize("module", MODULES)
def test_no_module_imports_a_posix_only_module_at_import_time(module):
    """Only function bodies may import them (as files.locked does, per platform)."""
    path = Path(importlib.util.find_spec(module).origin)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                 and not any(isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef))
                             for parent in _parents(tree, node))]
    names = {alias.name.split(".")[0] for node in top_level if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module.split(".")[0] for node in top_level if isinstance(node, ast.ImportFrom) and node.module}
    assert not names & POSIX_ONLY, f"{module} imports {sorted(names & POSIX_ONLY)} when it is imported"


def _parents(tree, target):
    """The nodes on the path from the module down to ``target``."""
    path = []

    def visit(node):
        if node is target:
            return True
        for child in ast.iter_child_nodes(node):
            if visit(child):
                path.append(node)
                return True
        return False

    visit(tree)
    return path


def test_atomic_open_replaces_the_file_only_when_the_block_succeeds(tmp_path):
    path = tmp_path / "out.txt"
    files.write_atomically(path, "first\n")
    with pytest.raises(RuntimeError):
        with files.atomic_open(path, "w") as handle:
            handle.write("half of a second version")
            raise RuntimeError("interrupted")
    assert path.read_text() == "first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left behind
    files.write_atomically(path, b"second\n")
    assert path.read_bytes() == b"second\n"
    with pytest.raises(ValueError, match="whole files"):
        with files.atomic_open(path, "a"):
            pass


def test_the_lock_is_exclusive_and_times_out(tmp_path):
    lock = tmp_path / "x.lock"
    held, release = threading.Event(), threading.Event()

    def holder():
        with files.locked(lock):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="gave up"):
        with files.locked(lock, timeout_s=0.2):
            pass
    assert time.monotonic() - start >= 0.2
    release.set()
    thread.join()
    with files.locked(lock, timeout_s=1):  # free again
        pass
