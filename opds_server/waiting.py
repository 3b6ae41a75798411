"""Start-up's wait for a service that may still be starting beside us (a container, a pod)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def wait_until_answers(
    ask: Callable[[], object],
    errors: tuple[type[Exception], ...],
    *,
    what: str,
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> Exception | None:
    """Call ``ask`` until it returns without one of ``errors``, at most ``seconds``, saying once that
    it waits for ``what`` (and, if it did, that ``what`` answers); the last error if it never did."""
    deadline = clock() + seconds
    delay = 0.25
    said = False
    while True:
        try:
            ask()
        except errors as exc:
            if clock() >= deadline:
                return exc
            if not said:
                log.warning("waiting for %s (up to %.0f s)", what, seconds)
                said = True
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        if said:
            log.warning("%s answers", what)
        return None
