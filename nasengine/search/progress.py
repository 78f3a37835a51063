"""What a search shows while it runs: a tqdm bar over recorded candidates plus one log line per generation."""
from __future__ import annotations

import logging
import sys

__all__ = ["Progress", "fmt"]

log = logging.getLogger("nasengine.search")


class Progress:
    """A tqdm bar over recorded candidates (when ``enabled``) plus one log line per generation."""

    def __init__(self, enabled: bool, total: int | None, initial: int):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="cand", dynamic_ncols=True, file=sys.stderr,
                            desc="search")

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def postfix(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            log.info(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def fmt(value: float) -> str:
    """A metric value in a progress line."""
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3g}"
