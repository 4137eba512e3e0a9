"""Forwarding the core's Python logging and warnings.warn to the node's ROS logger
(RosLogBridge), so the core's messages reach /rosout and the console once, in the ROS format."""
from __future__ import annotations

import collections
import logging
import warnings
from typing import Any, Optional

# Python logger of the core (dir_ros.predictor, dir_ros.model, ...) that the node forwards
# to its ROS logger, so the core's warnings reach /rosout.
CORE_LOGGER = "dir_ros"
# Messages forwarded recently, remembered so that the warnings.warn twin of a logged line
# (the predictor both logs and warns "NO WEIGHTS GIVEN") is not printed a second time.
FORWARDED_MEMORY = 32


class RosLogBridge(logging.Handler):
    """Forwards the core's Python log records and warnings.warn to a ROS logger: they reach
    /rosout and the console once, in the ROS format (the `dir_ros` logger stops propagating
    to root handlers while installed; a warning repeating a forwarded record is dropped)."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__(logging.DEBUG)
        self.ros_logger = ros_logger
        self._recent: collections.deque = collections.deque(maxlen=FORWARDED_MEMORY)
        self._installed = False

    # The `dir_ros` logger's level and propagation before the first bridge was installed:
    # with several nodes in one process, the last one to go restores these (a bridge that
    # saved what an earlier bridge had already changed would leave propagation off).
    _core_before: Optional[tuple[int, bool, Any]] = None

    def install(self) -> None:
        """Attach to the `dir_ros` logger at the ROS logger's level; take over warnings."""
        core = logging.getLogger(CORE_LOGGER)
        if not any(isinstance(h, RosLogBridge) for h in core.handlers):
            RosLogBridge._core_before = (core.level, core.propagate, warnings.showwarning)
        self._installed = True
        core.addHandler(self)
        core.propagate = False
        core.setLevel(int(self.ros_logger.get_effective_level()))  # same numbers as logging
        warnings.showwarning = self.show_warning

    def uninstall(self) -> None:
        """Detach and restore what install() changed (idempotent)."""
        if not self._installed:
            return
        core = logging.getLogger(CORE_LOGGER)
        core.removeHandler(self)
        remaining = [h for h in core.handlers if isinstance(h, RosLogBridge)]
        if remaining:  # another node's bridge takes over the warnings
            if warnings.showwarning == self.show_warning:
                warnings.showwarning = remaining[-1].show_warning
        elif RosLogBridge._core_before is not None:  # the last bridge: restore the original
            level, propagate, showwarning = RosLogBridge._core_before
            core.setLevel(level)
            core.propagate = propagate
            warnings.showwarning = showwarning
            RosLogBridge._core_before = None
        self._installed = False

    def emit(self, record: logging.LogRecord) -> None:
        """One Python log record -> the ROS logger at the same severity (only the newest
        bridge forwards: several nodes in one process do not repeat each record)."""
        if _newest_bridge() is not self:
            return
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            self._recent.append(text)
            where = record.name.removeprefix(CORE_LOGGER).lstrip(".") or CORE_LOGGER
            line = f"{where}: {text}"
            if record.levelno >= logging.CRITICAL:
                self.ros_logger.fatal(line)
            elif record.levelno >= logging.ERROR:
                self.ros_logger.error(line)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(line)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(line)
            else:
                self.ros_logger.debug(line)
        except Exception:  # a logging failure must not break the caller
            self.handleError(record)

    def show_warning(self, message: Any, category: type, filename: str, lineno: int,
                     file: Any = None, line: Optional[str] = None) -> None:
        """warnings.showwarning replacement: one ROS warning line, unless the same text was
        just logged through the core's logger."""
        if _newest_bridge() is not self:
            return
        text = str(message)
        if text in self._recent:
            self._recent.remove(text)
            return
        self.ros_logger.warning(f"{category.__name__}: {text}")


def _newest_bridge() -> Optional[RosLogBridge]:
    """The RosLogBridge installed last on the core's logger (None when none is)."""
    bridges = [h for h in logging.getLogger(CORE_LOGGER).handlers if isinstance(h, RosLogBridge)]
    return bridges[-1] if bridges else None
