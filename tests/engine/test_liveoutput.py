"""engine.liveoutput in one process: a Sender's pieces come back out of a Receiver as whole lines.

(Through a real Dask scheduler and the `mlv run` pipe: tests/cli/test_cli_live_output.py.)
"""

from __future__ import annotations

import threading
import time

from mlv.engine import liveoutput


def collect() -> tuple[liveoutput.Receiver, list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    return liveoutput.Receiver(liveoutput.new_topic(), lambda stage, line: lines.append((stage, line))), lines


def test_pieces_of_two_runs_become_whole_lines_per_stage_and_the_unfinished_tail_comes_at_the_end():
    receiver, lines = collect()
    with receiver:
        a = liveoutput.Sender(receiver.topic, "train@rf", "run-a")
        b = liveoutput.Sender(receiver.topic, "prep", "run-b")
        receiver.expect("run-a")
        for sender, piece in [(a, b"epoch 1 lo"), (b, b"reading\n"), (a, b"ss 0.3\nepoch 2"), (b, b"done\n")]:
            sender(piece)
            sender.flush()
        a.flush(end=True)
        receiver.finish("run-a", timeout=1)
    assert lines == [("prep", "reading"), ("train@rf", "epoch 1 loss 0.3"), ("prep", "done"), ("train@rf", "epoch 2")]


def test_a_character_split_between_reads_arrives_whole_and_carriage_returns_end_lines():
    receiver, lines = collect()
    text = "naïve 10%\r20%\r\nok\n".encode()
    cut = text.index("ï".encode()) + 1  # in the middle of the two bytes of 'ï'
    with receiver:
        sender = liveoutput.Sender(receiver.topic, "s", "r")
        sender(text[:cut])
        sender.flush()
        sender(text[cut:])
        sender.flush(end=True)
    assert [line for _, line in lines] == ["naïve 10%", "20%", "ok"]


def test_a_flood_is_cut_to_its_end_with_a_note_and_the_receiver_waits_for_a_late_end():
    receiver, lines = collect()
    with receiver:
        sender = liveoutput.Sender(receiver.topic, "chatty", "r")
        receiver.expect("r")
        sender(b"x" * (3 * liveoutput.MAX_TEXT) + b"\nlast\n")
        sender.flush()
        late = threading.Timer(0.2, sender.flush, kwargs={"end": True})
        late.start()
        began = time.monotonic()
        receiver.finish("r", timeout=5)
        assert time.monotonic() - began < 4  # it returned once the end arrived, not at the timeout
        late.join()
    shown = [line for _, line in lines]
    assert shown[0].startswith("[mlv: ") and "`mlv show chatty` has all" in shown[0]
    assert shown[-1] == "last" and sum(len(line) for line in shown[1:]) < liveoutput.MAX_TEXT


def test_without_a_receiver_or_a_dask_worker_nothing_is_sent_and_nothing_fails():
    sender = liveoutput.Sender(liveoutput.new_topic(), "s", "r")
    sender(b"nobody listens\n")
    sender.flush(end=True)
