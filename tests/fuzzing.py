"""Hypothesis profiles and strategies shared by the fuzz suites (test_fuzz_wire, test_fuzz_receiver).

Profiles (env ``HYPOTHESIS_PROFILE``, default "ci"):

- ``ci``: derandomized (the same examples every run, so the test suite cannot turn red at random),
  no deadline (a 2-core CI box is slow), each test's ``examples`` as written.
- ``fuzz``: random, no deadline, ``examples`` times ``TELNYX_NB_FUZZ_FACTOR`` (default 20): a
  fresh search every time, unless ``--hypothesis-seed`` fixes it, as ``.ci/run``'s bounded fuzz
  step does (so CI is reproducible).

Tests take their settings from :func:`fuzz_settings` so that the profile never changes the
settings of other test modules.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from telnyx_nb.wire.errors import INT64_MAX, INT64_MIN

__all__ = ["PROFILE", "fuzz_settings", "json_values", "hostile_numbers", "hostile_text", "counter_tokens"]

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", derandomize=True, deadline=None, suppress_health_check=_SLOW, print_blob=True)
settings.register_profile("fuzz", derandomize=False, deadline=None, suppress_health_check=_SLOW, print_blob=True)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "fuzz"):
    PROFILE = "ci"   # another profile of the user's: these modules keep their own bounds
FACTOR = int(os.environ.get("TELNYX_NB_FUZZ_FACTOR", "20")) if PROFILE == "fuzz" else 1


def fuzz_settings(examples: int, **overrides) -> settings:
    """Settings from the active profile with ``examples`` (scaled under "fuzz") examples."""
    return settings(settings.get_profile(PROFILE), max_examples=examples * FACTOR, **overrides)


#: Numbers at and around every bound the wire meets: int64, uint64, 2**32, 2**16, doubles.
EDGE_INTS = [0, 1, -1, 127, 128, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
             10**18 - 1, 10**18, INT64_MAX - 1, INT64_MAX, INT64_MAX + 1, INT64_MIN, INT64_MIN - 1,
             2**64 - 1, 2**64, 10**30, -(10**30), 10**400]
EDGE_FLOATS = [0.0, -0.0, 0.5, 1.0, 1.5, -1.0, 1e-320, 1e308, -1e308, 9.3e18, 1.8e19]

hostile_numbers = st.one_of(
    st.sampled_from(EDGE_INTS), st.sampled_from(EDGE_FLOATS), st.integers(),
    st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
)

#: Text of any length and content: control characters, astral planes, long runs.
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.builds(lambda c, n: c * n, st.sampled_from(["9", "0", "a", "\u00e9", "\U0001f600", " ", "\\"]),
              st.integers(0, 5000)),
    st.sampled_from(["", "0", "-0", "+1", "1.0", "1e2", " 1", "1 ", "\u0661", "\uff11", "NaN", "Infinity",
                     "9" * 19, "9" * 20, "0" * 30 + "1", "9223372036854775807", "9223372036854775808"]),
)

#: Any JSON value, including deep nesting (the parsers allow 1,024 levels) and hostile leaves.
json_leaves = st.one_of(st.none(), hostile_numbers, hostile_text)
json_values = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def nested(depth: int, leaf: str = "1", kind: str = "array") -> str:
    """JSON text of ``depth`` nested arrays or objects around ``leaf``."""
    if kind == "array":
        return "[" * depth + leaf + "]" * depth
    return '{"a":' * depth + leaf + "}" * depth


deep_json = st.builds(nested, st.sampled_from([1, 63, 64, 65, 254, 255, 256, 999, 1000, 1023, 1024, 1025]),
                      st.sampled_from(["1", '"x"', "[]", "{}"]), st.sampled_from(["array", "object"]))

#: A counter as a JSON token: strings and numbers of every shape, in and out of int64.
counter_tokens = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(EDGE_INTS).map(lambda n: f'"{n}"'),
    st.sampled_from(EDGE_INTS).map(str),
    st.sampled_from(["1e400", "-1e400", "1.0", "1e2", "-0", '"-0"', '"1.0"', '"1e2"', '" 1"', '"\\u0661"',
                     "true", "null", "[]", "{}", '"' + "9" * 400 + '"', "9" * 400, "NaN", "Infinity"]),
    hostile_text.map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    deep_json,
)
