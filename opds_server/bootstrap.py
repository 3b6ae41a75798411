"""Set up the project's own virtual environment on a fresh clone, then re-run inside it.

``python3 -m opds_server ...`` and ``python3 -m tests`` call ``ensure_environment`` before importing
anything outside the standard library: it creates ``.venv`` next to ``pyproject.toml``, installs
the pinned, hash-checked dependencies of the lock file, and re-executes the same command with the
venv's interpreter. A later run whose lock file has not changed goes straight through.

Standard library only, and written so that an old Python gets a clear message instead of a
syntax error. Set ``OPDS_NO_BOOTSTRAP=1`` to use the current interpreter as it is (for a
``pip install``-ed copy, or a distribution package).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

MINIMUM_PYTHON = (3, 11)
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "tests" / "requirements.lock"
_STAMP = VENV / "opds-installed.json"


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _say(message: str) -> None:
    print(f"[setup] {message}", file=sys.stderr, flush=True)


def _installed() -> dict[str, str]:
    try:
        return dict(json.loads(_STAMP.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def _digest(lock: Path) -> str:
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def _run(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, check=False)  # noqa: S603 - our own fixed command lines
    if result.returncode != 0:
        _say(f"failed: {' '.join(command)}")
        sys.exit(result.returncode)


def _link_project(python: str) -> None:
    """Make the checkout importable from the venv (what an editable install does), and add the
    ``opds-server`` command, without building anything."""
    found = subprocess.run(  # noqa: S603 - the venv's own interpreter
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    (Path(found.stdout.strip()) / "opds-server-checkout.pth").write_text(f"{ROOT}\n", encoding="utf-8")
    if os.name != "nt":
        launcher = VENV / "bin" / "opds-server"
        launcher.write_text(
            f"#!{python}\nimport sys\nfrom opds_server.cli import main\nsys.exit(main())\n", encoding="utf-8"
        )
        launcher.chmod(0o755)


def _install(lock: Path) -> None:
    python = str(_venv_python())
    if not _venv_python().exists():
        _say(f"creating a virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        _run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    _say(f"installing the pinned dependencies of {lock.relative_to(ROOT)} (once)")
    _run([python, "-m", "pip", "install", "--quiet", "--require-hashes", "--no-deps", "-r", str(lock)])
    _link_project(python)
    stamp = _installed()
    stamp[lock.name if lock == RUNTIME_LOCK else "dev"] = _digest(lock)
    _STAMP.write_text(json.dumps(stamp), encoding="utf-8")


def ensure_environment(*, dev: bool = False) -> None:
    """Make sure we run inside the project's venv with the locked dependencies installed.

    Returns when they are; otherwise installs them and replaces this process with the same
    command run by the venv's Python.
    """
    if sys.version_info < MINIMUM_PYTHON:
        wanted = ".".join(map(str, MINIMUM_PYTHON))
        sys.exit(f"opds-server needs Python {wanted} or newer; this is {sys.version.split()[0]}")
    if os.environ.get("OPDS_NO_BOOTSTRAP") == "1" or not RUNTIME_LOCK.is_file():
        return
    lock = DEV_LOCK if dev else RUNTIME_LOCK
    key = "dev" if dev else lock.name
    inside = Path(sys.prefix).resolve() == VENV.resolve()
    if _installed().get(key) != _digest(lock):
        _install(lock)
    elif inside:
        return
    module = sys.modules["__main__"].__spec__
    target = module.name.removesuffix(".__main__") if module else "opds_server"
    os.execv(str(_venv_python()), [str(_venv_python()), "-m", target, *sys.argv[1:]])  # noqa: S606
