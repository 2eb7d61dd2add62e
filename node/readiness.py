"""What a starting ``hashfed serve`` still waits for (the match index, ...).

The state lives here, apart from the routes that report it (``GET /readyz``,
node/http/readiness.py), so the parts that become ready (node/match/load.py)
need nothing of the HTTP layer.
"""

from __future__ import annotations

import time


class Readiness:
    """Readiness tracks the parts of a starting process that are not ready yet.

    A part is named (``"index"``) and carries a short reason a person can read
    (``"loading the match index"``); a part that failed for good keeps its reason.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._waiting: dict[str, str] = {}

    def wait_for(self, part: str, reason: str) -> None:
        """wait_for marks part as not ready, for reason."""
        self._waiting[part] = reason

    def ready(self, part: str) -> None:
        """ready marks part as ready."""
        self._waiting.pop(part, None)

    def waiting(self) -> dict[str, str]:
        """waiting returns the parts not ready yet, with their reasons."""
        return dict(self._waiting)
