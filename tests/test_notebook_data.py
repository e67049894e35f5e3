"""The recorded session shipped in ``notebooks/data/`` (opened by ``07-saved-sessions.ipynb``) and its generator.

The shipped copy must load with no sandbox in the current recording format, be redacted (no phone
number in any text of it), small, and hold what the notebook shows: both tracks streamed, a fork
of both directions with loss, transcripts. ``scripts/make_notebook_session.py`` must regenerate
such a session: it is run for real (sandbox, receiver and the ``telnyx`` SDK) into a temporary
directory and its copy passes the same checks.
"""

import functools
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import telnyx_nb as tnb
from telnyx_nb.store import recording

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "notebooks" / "data" / "survey-call"
SCRIPT = ROOT / "scripts" / "make_notebook_session.py"
MAX_BYTES = 300_000


@functools.cache
def _script():
    spec = importlib.util.spec_from_file_location("make_notebook_session", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_like_the_notebook_needs(path: Path) -> None:
    session = tnb.load(path)
    assert session.redacted and session.manifest["finished"], repr(session)
    assert session.manifest["version"] == recording.VERSION, "regenerate: scripts/make_notebook_session.py"
    assert session.events.call_control_id.nunique() == 1
    assert set(session.frames.track) == {"inbound", "outbound"}
    assert set(session.rtp.target) == {"rx", "tx"}
    assert session.transcripts.is_final.any() and (~session.transcripts.is_final).any()
    quality = session.quality().set_index(["source", "track"])
    assert (quality.loc["stream", "lost"] == 0).all() and quality.loc["fork", "lost"].sum() > 0, quality
    _script().check(path, secrets=[_script().TO, _script().FROM_])


def test_shipped_session_loads_redacted_and_small():
    _assert_like_the_notebook_needs(SHIPPED)
    size = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert size < MAX_BYTES, f"{SHIPPED} is {size} bytes"


def test_the_check_finds_a_phone_number_in_parquet(tmp_path):
    """The generator's check is not blind: one number put back into a (compressed) Parquet file fails it."""
    copy = tnb.load(SHIPPED).save(tmp_path / "copy")
    events = next((copy / "events").glob("*.parquet"))
    table = pq.read_table(events)
    payload = pc.replace_substring_regex(table["payload"], r"redacted:[0-9a-f]{16}", "+15550100", max_replacements=1)
    pq.write_table(table.set_column(table.schema.get_field_index("payload"), "payload", payload), events)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "redacted": True}))
    with pytest.raises(AssertionError, match="phone number"):
        _script().check(copy, secrets=[])


def test_generator_regenerates_it(tmp_path):
    out = tmp_path / "survey-call"
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                            timeout=180, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"saved {out}" in result.stdout, result.stdout
    _assert_like_the_notebook_needs(out)
