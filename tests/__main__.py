"""``python3 -m tests``: set up the dev environment, then run every check, fastest first.

hygiene -> ruff format -> ruff check -> import contracts -> mypy --strict -> pytest. The first
failure stops the run with its exit code. Arguments are passed to pytest. ``.ci/run`` calls this
same script, so local runs and CI cannot drift apart.
"""

import sys

from opds_server.bootstrap import ensure_environment

ensure_environment(dev=True)

from tests.checks import main  # noqa: E402 - only importable once the environment is ready

sys.exit(main(sys.argv[1:]))
