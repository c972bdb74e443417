"""Streaming input for generate and predict: a partial batch goes out when the input pauses, so a live
pipe (`tail -f log | hfllm ...`) gets each answer before the next line is written."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading

from hfllm.inference.stream import line_batches


def _live(argv: list, lines: list[str]) -> None:
    """Run `python -m hfllm ARGV`, write `lines` one at a time and read each answer before the next write."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hfllm", *map(str, argv)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    answers: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [answers.put(line) for line in proc.stdout], daemon=True).start()
    try:
        for number, line in enumerate(lines, start=1):
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            assert json.loads(answers.get(timeout=120))["line"] == number  # stdin is still open
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_line_batches_hand_out_a_partial_batch_when_the_input_pauses():
    """The second line is written only once the first came out alone: no full batch is awaited."""
    released = threading.Event()

    def source():
        yield "first\n"
        released.wait(timeout=60)  # if the reader waited for a full batch, this would time out
        yield "second\n"

    batches = []
    for batch in line_batches(source(), batch_size=8, idle=0.05):
        batches.append(batch)
        released.set()
    assert batches == [[(1, "first\n")], [(2, "second\n")]]


def test_generate_answers_a_live_pipe_line_by_line(causal_model):
    _live(["generate", "-m", causal_model, "--max-new-tokens", "3"], ["Library for", "Command-line tool"])


def test_predict_answers_a_live_pipe_line_by_line(ft_build, ft_tiny, tmp_path):
    model, _ = ft_tiny
    classifier = ft_build.classifier_dir(tmp_path / "clf", model, {"games": 0, "mail": 1})
    _live(["predict", "-m", classifier], ["a mail transport agent", "a game of chess"])
