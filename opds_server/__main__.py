"""``python3 -m opds_server``: set up the environment on first use, then run the CLI."""

import sys

from opds_server.bootstrap import ensure_environment

ensure_environment()

from opds_server.cli import main  # noqa: E402 - only importable once the environment is ready

sys.exit(main())
