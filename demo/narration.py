"""The demo's narration: timestamped sentences, and each audit entry as governor.timeline tells it."""

from __future__ import annotations

import time
from datetime import datetime
from typing import IO

from governor.incident import IncidentState
from governor.timeline import describe


class Narrator:
    """Prints timestamped sentences, and the incident's audit trail as it grows."""

    def __init__(self, out: IO[str], t0: float) -> None:
        self.out = out
        self.t0 = t0
        self.tty = out.isatty()
        self.seen = 0

    def say(self, text: str, *more: str, strong: bool = False) -> None:
        clock = datetime.now().strftime("%H:%M:%S")
        elapsed = time.monotonic() - self.t0
        head = f"demo {clock} +{elapsed:5.1f}s |"
        if self.tty:
            head = f"\033[1;32m{head}\033[0m"
            if strong:
                text = f"\033[1m{text}\033[0m"
        lines = [f"{head} {text}", *(f"{' ' * 21}| {m}" for m in more)]
        print("\n".join(lines), file=self.out, flush=True)

    def audit(self, state: IncidentState) -> None:
        for entry in state.audit[self.seen :]:
            self.say(describe(entry), strong=entry.action in {"phase", "rolled_back", "approved", "closed"})
        self.seen = len(state.audit)
