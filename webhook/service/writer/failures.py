"""The write side's errors: one log line the first time, then quiet until the text changes or the
write succeeds, so a failure retried every round does not flood the log."""

from __future__ import annotations

import logging

logger = logging.getLogger("webhook.writer")


class FailureLog:
    """Failures by key ("status of ChaosImageRegistry x"); `count` tells a round whether any failed."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._texts: dict[str, str] = {}
        self.count = 0

    def failed(self, key: str, text: str) -> None:
        self.count += 1
        if self._texts.get(key) != text:
            logger.warning("%s (retrying every round)", text)
            self._texts[key] = text
        else:
            logger.debug("%s (again)", text)

    def succeeded(self, key: str) -> None:
        if self._texts.pop(key, None) is not None:
            logger.info("%s: succeeded after earlier failures", key)
