"""What a long run is doing, for the person waiting on it: the phase (symbolic execution,
vacuity, bmc depth, houdini round and lemma count, re-check queries done of total) and the
seconds elapsed, on a stream.  `Progress()` says nothing; the command line turns it on for a
terminal's stderr (formal.cli.main), where one line is rewritten in place."""

from __future__ import annotations

import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, live: bool = False) -> None:
        """stream None: silent.  live: rewrite one terminal line; else one line per update."""
        self.stream = stream
        self.live = live
        self.t0 = time.monotonic()
        self.shown = False

    def __call__(self, text: str) -> None:
        """The run is now doing `text` ("houdini round 2: 584 lemmas")."""
        if self.stream is None:
            return
        line = f"[{time.monotonic() - self.t0:7.1f}s] {text}"
        if self.live:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        """Clear the live line before the result is printed."""
        if self.stream is not None and self.live and self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
