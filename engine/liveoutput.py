"""Stage output streamed to the client while the stage runs: masked text, then whole lines.

Worker side: ``Sender`` gets the bytes ``execute`` has already passed through the secrets
masker (so nothing unmasked ever leaves the log's path) and sends them on, coalesced to at
most one message per ``FLUSH_S`` and per stage. Client side: ``Receiver`` puts the pieces
of each run back together into lines and hands each line to a callback with its stage.

The channel is Dask's own: on a Dask worker (a local cluster or a remote scheduler) each
message is a worker event (``Worker.log_event``) on a topic of this ``mlv run``, which the
scheduler forwards to the client that subscribed to it (``Client.subscribe_topic``). In
mlv's own process (the threaded path) the receiver registered for the topic is called
directly. Nothing is written to a side file; the captured log stays the record.

A message is ``{"run": run id, "stage": name, "text": str, "end": bool}``; ``end`` marks the
last one of a run, so the client can wait for the tail of a stage before reporting it.
A scheduler keeps a topic's recent events in memory; the topic is this run's alone, and the
client drops it from the scheduler when the run ends, so a long-lived scheduler does not
collect every stage's output (one that refuses keeps at most its configured event count).
"""

from __future__ import annotations

import codecs
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable

FLUSH_S = 0.05  # at most this many messages a second per stage: a chatty stage costs the scheduler little
MAX_TEXT = 16 * 1024  # larger pieces are cut: the terminal gets the end, the log keeps everything
_NEWLINE = re.compile(r"\r\n|\n|\r")  # \r: progress bars redraw a line; each redraw shows as a line

_local: dict[str, Callable[[dict], None]] = {}  # topic -> the receiver of a run in this very process
_local_lock = threading.Lock()


def new_topic() -> str:
    """A topic of its own for one ``mlv run`` (several runs may share a scheduler)."""
    return f"mlv-output-{uuid.uuid4().hex[:12]}"


# -- worker side ---------------------------------------------------------------------------
class Sender:
    """Sends the masked output of one run of a stage, decoded as UTF-8, in coalesced pieces."""

    def __init__(self, topic: str, stage: str, run_id: str) -> None:
        self.topic, self.stage, self.run_id = topic, stage, run_id
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._last = 0.0

    def __call__(self, masked: bytes) -> None:
        """Take ``masked`` bytes; send what has gathered unless a message left less than ``FLUSH_S`` ago."""
        self._pending += self._decoder.decode(masked)
        if time.monotonic() - self._last >= FLUSH_S:
            self.flush()

    def flush(self, *, end: bool = False) -> None:
        """Send what has gathered (the stage is idle, or ended: ``end``)."""
        if end:
            self._pending += self._decoder.decode(b"", final=True)
        if not self._pending and not end:
            return
        text, self._pending = self._pending, ""
        if len(text) > MAX_TEXT:
            skipped = len(text) - MAX_TEXT
            text = f"[mlv: {skipped} characters of output not shown here; `mlv show {self.stage}` has all]\n" \
                   + text[-MAX_TEXT:]
        self._last = time.monotonic()
        _send(self.topic, {"run": self.run_id, "stage": self.stage, "text": text, "end": end})


def _send(topic: str, message: dict) -> None:
    with _local_lock:
        receive = _local.get(topic)
    if receive is not None:  # the client is this process: no Dask needed
        receive(message)
        return
    if "distributed" in sys.modules:  # never import it just to ask: the threaded path runs without it
        from distributed import get_worker

        try:
            worker = get_worker()
        except ValueError:
            return  # neither a Dask worker nor the client's process: nobody is listening
        worker.log_event(topic, message)


# -- client side ---------------------------------------------------------------------------
# Runs on the scheduler: forget a finished run's topic (Broker is distributed's, its topics a dict there).
_FORGET = lambda dask_scheduler, topic: bool(
    getattr(getattr(dask_scheduler, "_broker", None), "_topics", {}).pop(topic, None))
Emit = Callable[[str, str], None]  # (stage, line)


class Receiver:
    """Lines of every stage of one run, in order per stage, handed to ``emit`` as they complete."""

    def __init__(self, topic: str, emit: Emit) -> None:
        self.topic, self.emit = topic, emit
        self._partial: dict[str, tuple[str, str]] = {}  # run id -> (stage, unfinished last line)
        self._ended: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._client = None

    def __enter__(self) -> Receiver:
        with _local_lock:
            _local[self.topic] = self.receive
        return self

    def __exit__(self, *exc: object) -> None:
        with _local_lock:
            _local.pop(self.topic, None)
        if self._client is not None:
            try:
                self._client.unsubscribe_topic(self.topic)
                # by value (a lambda): the scheduler need not have mlv installed
                self._client.run_on_scheduler(_FORGET, topic=self.topic)
            except Exception as problem:  # noqa: BLE001  a closed client, a scheduler that refuses: its events
                # stay there, bounded by the scheduler's own limit, and nothing of the run depends on them
                logging.getLogger(__name__).debug("could not drop topic %s from the scheduler: %r", self.topic, problem)
            self._client = None

    def attach(self, client) -> None:
        """Also take the messages Dask workers send through ``client``'s scheduler."""
        self._client = client
        client.subscribe_topic(self.topic, lambda event: self.receive(event[1]))

    def expect(self, run_id: str) -> None:
        """A run of a stage was submitted: ``finish`` will wait for its last message."""
        with self._lock:
            self._ended[run_id] = threading.Event()

    def receive(self, message: dict) -> None:
        run_id, stage = message["run"], message["stage"]
        with self._lock:
            text = self._partial.pop(run_id, (stage, ""))[1] + message["text"]
            *lines, rest = _NEWLINE.split(text)
            if message.get("end"):
                lines, rest = (lines + [rest]) if rest else lines, ""
            if rest:
                self._partial[run_id] = (stage, rest)
            for line in lines:
                self.emit(stage, line)
            if message.get("end") and run_id in self._ended:
                self._ended[run_id].set()

    def finish(self, run_id: str, *, timeout: float) -> None:
        """The run's future is done: wait (at most ``timeout`` s) for its last message, then show what is left."""
        event = self._ended.get(run_id)
        if event is not None and timeout > 0:
            event.wait(timeout)
        with self._lock:
            self._ended.pop(run_id, None)
            stage, rest = self._partial.pop(run_id, ("", ""))
            if rest:
                self.emit(stage, rest)
