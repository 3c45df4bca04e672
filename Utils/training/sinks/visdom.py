"""Live training curves on a visdom server, without ever stalling training.

visdom's client posts synchronously and has no timeout: a server that accepts the connection but never answers
hangs the caller forever, and a missing server prints a traceback on every call. Here every call runs in one
daemon worker thread fed by a bounded queue, each HTTP request carries a timeout, and the first failure (refused,
timed out, or a request stuck longer than the timeout) disables plotting for the rest of the run with a single
warning. Training only ever does a non-blocking queue put.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import warnings
from typing import Callable

import numpy as np

__all__ = ["VisdomLogger"]

_STOP = object()


class VisdomLogger:
    """Append points to named line plots in one visdom environment.

    Args:
        server: e.g. "http://127.0.0.1".
        port: server port.
        env: the environment (one per run).
        timeout: seconds any single request may take; beyond it plotting is given up.
        max_queue: points buffered while the server is slow; further points are dropped (counted).
        warn: where the one warning goes (default: warnings.warn).
    """

    def __init__(self, server: str, port: int, env: str, timeout: float = 2.0, max_queue: int = 1000,
                 warn: Callable[[str], None] | None = None):
        self.server, self.port, self.env, self.timeout = server, int(port), env, float(timeout)
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._warn = warn or (lambda msg: warnings.warn(msg, RuntimeWarning, stacklevel=3))
        self._busy_since: float | None = None
        self.disabled = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._work, name="visdom-logger", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ caller side (training thread)
    def line(self, win: str, x: float, y: float, title: str | None = None, xlabel: str = "iteration") -> None:
        """Queue one point of curve `win`; returns at once whatever the server does."""
        if self.disabled or self._stuck():
            return
        try:
            self._queue.put_nowait((win, float(x), float(y), title or win, xlabel))
        except queue.Full:
            self.dropped += 1

    def scalar(self, tag: str, step: int, value: float, title: str | None = None) -> None:
        """The sink interface (Utils.training.sinks): one point of curve `tag`."""
        self.line(tag, step, value, title=title)

    def close(self, wait: float | None = None) -> None:
        """Let queued points go out for at most `wait` seconds (default: the timeout), then stop the worker."""
        wait = self.timeout if wait is None else wait
        deadline = time.monotonic() + wait
        while not self.disabled and self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass  # the daemon thread dies with the process

    # ------------------------------------------------------------------ worker side
    def _stuck(self) -> bool:
        started = self._busy_since
        if started is not None and time.monotonic() - started > self.timeout:
            self._disable(f"no answer from {self.server}:{self.port} within {self.timeout:g} s")
            return True
        return False

    def _disable(self, reason: str) -> None:
        if not self.disabled:
            self.disabled = True
            self._warn(f"visdom: {reason}; live plotting is off for this run, training goes on")

    def _connect(self):
        import requests  # deferred: visdom and its HTTP stack load only when a run plots live
        from visdom import Visdom

        timeout = self.timeout

        class _TimedVisdom(Visdom):
            # the stock client posts without a timeout (a silent server blocks it forever)
            def _handle_post(self, url, data=None):
                try:
                    r = self.session.post(url, data=data or {}, timeout=timeout)
                except requests.Timeout:  # not a RequestException any more: visdom would call it "cannot connect"
                    raise TimeoutError(f"no answer from {url} within {timeout:g} s") from None
                r.raise_for_status()
                return r.text

        try:
            return _TimedVisdom(server=self.server, port=self.port, env=self.env, raise_exceptions=True,
                                use_incoming_socket=False)
        except TimeoutError:
            raise
        except (requests.RequestException, ConnectionError, OSError) as exc:
            raise ConnectionError(f"cannot reach {self.server}:{self.port} ({type(exc).__name__})") from None

    def _work(self) -> None:
        logging.getLogger("visdom").setLevel(logging.ERROR)  # its "no incoming socket" notice on every start
        client = None
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if self.disabled:
                    continue
                self._busy_since = time.monotonic()
                if client is None:
                    client = self._connect()
                self._plot(client, *item)
            except Exception as exc:  # any failure of the plotting side must stay on this side
                self._disable(str(exc) or type(exc).__name__)
            finally:
                self._busy_since = None
                self._queue.task_done()

    def _plot(self, client, win: str, x: float, y: float, title: str, xlabel: str) -> None:
        # "append" creates the window when it is missing and extends it when a resumed run finds it
        client.line(X=np.array([x]), Y=np.array([y]), win=win, env=self.env, update="append",
                    opts=dict(title=title, xlabel=xlabel, ylabel=win))
