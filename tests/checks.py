"""The steps of ``python3 -m tests``; each is a command line run from the project root."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_DEBUG = re.compile(r"^\s*(breakpoint\(\)|import pdb|import ipdb|pdb\.set_trace\(\))", re.MULTILINE)
# Kept byte for byte as calibre wrote it (its trigger headers end in a space); the demo test compares.
_VERBATIM = {"opds_server/calibre/schema.sql"}
_TEXT_SUFFIXES = {
    ".py",
    ".md",
    ".toml",
    ".yml",
    ".yaml",
    ".cfg",
    ".txt",
    ".sql",
    ".sh",
    ".json",
    ".lock",
    ".ini",
}


def _tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    names = listed.stdout.splitlines() if listed.returncode == 0 else []
    return [ROOT / name for name in names if (ROOT / name).is_file()]


def hygiene() -> int:
    """Trailing whitespace, missing final newline, leftover debugger calls."""
    problems = []
    for path in _tracked_files():
        if path.suffix not in _TEXT_SUFFIXES and path.name not in {"run", ".gitignore"}:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        relative = path.relative_to(ROOT)
        if relative.as_posix() in _VERBATIM:
            continue
        if text and not text.endswith("\n"):
            problems.append(f"{relative}: no newline at end of file")
        for number, line in enumerate(text.splitlines(), 1):
            if line != line.rstrip():
                problems.append(f"{relative}:{number}: trailing whitespace")
        if path.suffix == ".py" and _DEBUG.search(text):
            problems.append(f"{relative}: debugger call left in")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


def _parallel(pytest_args: Sequence[str]) -> list[str]:
    """One pytest worker per CPU (pytest-xdist) unless the caller chose: the suite's servers and
    crawls wait on I/O and subprocesses, and 2 cores halve its time."""
    chosen = any(a == "-n" or a.startswith(("-n", "--numprocesses", "-p no:xdist")) for a in pytest_args)
    # worksteal: an idle worker takes queued tests from a busy one, so the long crawls do not
    # leave one worker running alone at the end.
    return list(pytest_args) if chosen else ["-n", "auto", "--dist", "worksteal", *pytest_args]


def _steps(pytest_args: Sequence[str]) -> list[tuple[str, list[str] | None]]:
    python = sys.executable
    return [
        ("hygiene", None),
        ("codespell", [python, "-m", "codespell_lib", "opds_server", "feeds", "sync", "tests", "README.md"]),
        ("ruff format", [python, "-m", "ruff", "format", "--check", "."]),
        ("ruff check", [python, "-m", "ruff", "check", "."]),
        ("import contracts", [str(Path(python).parent / "lint-imports")]),
        ("mypy", [python, "-m", "mypy"]),
        ("pytest", [python, "-m", "pytest", *_parallel(pytest_args)]),
    ]


def main(pytest_args: Sequence[str]) -> int:
    for name, command in _steps(pytest_args):
        started = time.monotonic()
        print(f"==> {name}", flush=True)
        code = hygiene() if command is None else subprocess.run(command, cwd=ROOT, check=False).returncode
        print(
            f"<== {name}: {'ok' if code == 0 else f'failed ({code})'} in {time.monotonic() - started:.1f}s",
            flush=True,
        )
        if code != 0:
            return code
    return 0
