"""The README's Python code blocks, run top to bottom as one script, as "Run All" runs a notebook.

Each ```python block is cut out of README.md in order and the blocks are joined into one program,
run in a fresh interpreter in a temporary directory (the suite's capture mode applies), followed by
checks of what the README says the code produced. Before ``rx.wait_for``, the notebook example's
``start_streaming`` went out about 20 ms after ``dial``, before the callee answered, and the sandbox
(like Telnyx) answered 422 90034: it failed 4 runs of 4.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import telnyx_nb as tnb

from waiting import timeout

README = Path(__file__).resolve().parent.parent / "README.md"


def fences() -> list[tuple[str, str]]:
    """(info string, content) of each fenced code block, as a CommonMark parser (GitHub's
    rendering) reads the README: a fence that does not close swallows what follows."""
    from markdown_it import MarkdownIt

    return [(token.info, token.content) for token in MarkdownIt("commonmark").parse(README.read_text())
            if token.type == "fence"]


def python_blocks() -> list[str]:
    return [content for info, content in fences() if info == "python"]


def test_every_fence_closes_where_it_should():
    """No block runs on into the prose (a closing fence with text after it is no fence, and the
    block then swallows what follows, headings and other blocks included)."""
    for info, content in fences():
        assert not re.search(r"^#{2,6} |^```", content, re.M), f"a {info} block swallowed prose:\n{content[:300]}"


def test_readme_has_the_api_tour_with_waiting_hangup_and_cleanup():
    blocks = python_blocks()
    first = blocks[0]
    for step in ('rx.wait_for("call.answered", ccid)', "tnb.hangup(client, ccid, rx)", "tnb.load("):
        assert step in first, step
    assert "rx.stop(); sb.stop()" in blocks[-1]
    assert len(blocks) >= 5, len(blocks)


def test_readme_code_blocks_run_top_to_bottom(tmp_path):
    code = "\n".join(python_blocks())
    capture = os.environ.get("TELNYX_NB_TEST_CAPTURE")
    prelude = ("import telnyx_nb.defaults\n"
               f"telnyx_nb.defaults.RECEIVER_PROCESS = {capture != 'thread'}\n") if capture else ""
    epilogue = ("\nassert len(s.transcripts) and len(s.frames)\n"
                "assert s.commands.command.tolist() == ['dial', 'streaming_start', 'transcription_start', 'hangup']\n"
                "assert rx.commands.command.tolist()[-2:] == ['dial', 'fork_start']\n"
                "assert len(rx.rtp) > 0\n"
                "print('README ok')\n")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("TELNYX_API_KEY", None)
    result = subprocess.run([sys.executable, "-c", prelude + code + epilogue], cwd=tmp_path, capture_output=True,
                            text=True, timeout=timeout(180), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("README ok")
    assert tnb.load(tmp_path / "session").commands.status.tolist() == ["ok"] * 4
