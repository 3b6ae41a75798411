"""``python3 -m tests.benchmark auth``: run a benchmark (sets up the environment first)."""

import sys

from opds_server.bootstrap import ensure_environment

ensure_environment(dev=True)

from tests.benchmark.runner import main  # noqa: E402 - only importable once the environment is ready

sys.exit(main(sys.argv[1:]))
