"""The numbers telnyx_nb.emodel's docstring states are the code's: a clean G.711 call's R and MOS."""

from __future__ import annotations

import re

import pytest

from telnyx_nb import emodel


def _documented() -> dict[str, float]:
    """The clean-call sentence of the module docstring: its delay, Ro − Is, Id, R, MOS and the
    MOS rounded to two places."""
    text = " ".join((emodel.__doc__ or "").split())
    found = re.search(r"a clean G\.711 call \(d = (?P<d>[\d.]+) ms[^)]*\) gets R = (?P<r0>[\d.]+) − (?P<id>[\d.]+) "
                      r"= (?P<r>[\d.]+), MOS (?P<mos>[\d.]+) \((?P<mos2>[\d.]+)\)", text)
    assert found, "the docstring no longer states a clean call's R and MOS in the form this test reads"
    return {key: float(value) for key, value in found.groupdict().items()}


def test_the_documented_clean_call_is_what_the_code_gives():
    doc = _documented()
    assert doc["r0"] == emodel.R0
    assert doc["id"] == pytest.approx(0.024 * doc["d"], abs=5e-3)                 # Id below 177.3 ms
    assert doc["r"] == pytest.approx(doc["r0"] - doc["id"], abs=5e-3)
    clean = emodel.mos(0.0, 0.0)                                                  # what quality() gives
    assert clean == emodel.e_model_mos(0.0, doc["d"])                             # d is mos()'s 10 ms
    assert round(clean, 4) == doc["mos"] and round(clean, 2) == doc["mos2"]
    r = doc["r"]
    assert 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r) == pytest.approx(doc["mos"], abs=5e-5)   # Annex B
