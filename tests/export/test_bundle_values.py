"""export/bundle_values.py: each kind of value the app bundle writes, checked by its type."""

from __future__ import annotations

import math

import pytest

from edgeprune.base.errors import ExportError
from edgeprune.export import bundle_values as bv


@pytest.mark.parametrize("value, want", [
    (0.7, 0.7), ("0.7", 0.7), (1, 1.0), (" 0.5 ", 0.5),  # numbers, and strings that are numbers
    (float("nan"), None), (float("inf"), None), ("1e999", None), (10 ** 400, None), (1e300, None),
    (True, None), ("0.7\nSYSTEM x", None), ([0.7], None), ({"a": 1}, None), (-0.1, None), (None, None),
])
def test_temperature_is_a_number_in_range(value, want):
    assert bv.number("temperature", value) == want


def test_top_k_is_a_whole_number():
    assert bv.number("top_k", 40) == 40 and bv.number("top_k", "40") == 40 and bv.number("top_k", 40.0) == 40
    assert bv.number("top_k", 40.5) is None and bv.number("top_k", -1) is None


@pytest.mark.parametrize("s", ["<|end|>", 'a"b\\c', "x\nFROM y", "\x00\x1b\x7f", "a\u2028b\u2029c\u0085d", "\u202e",
                               "\U000e0001tag"])
def test_stop_strings_are_one_line_and_read_back(s):
    q = bv.quoted(s)
    assert q.startswith('"') and q.endswith('"') and len(q.splitlines()) == 1
    assert all(c.isprintable() for c in q)
    import json  # the escapes are JSON's own (\\u, \\n, \\", \\\\): JSON reads them back exactly
    assert json.loads(q) == s


def test_names():
    assert bv.display_name("a\nFROM x\u2028y\x00z") == "a FROM x y z"
    assert len(bv.display_name("n" * 10_000)) == bv.DISPLAY_MAX
    assert bv.bundle_name("../../etc/passwd\n") == "etc-passwd"
    assert len(bv.bundle_name("x" * 1000)) == bv.NAME_MAX
    for bad in ("", "-rf", ".hidden", "a b", "a/b", "$(x)", "x" * 200):
        with pytest.raises(ExportError, match="is not a file name"):
            bv.file_stem(bad)
    assert bv.file_stem("SmolLM2-135M.v2_x") == "SmolLM2-135M.v2_x"


def test_sampling_falls_back_to_the_default_temperature():
    assert bv.sampling({"temperature": "hot", "top_p": 0.9}, 0.8) == {"temperature": 0.8}
    got = bv.sampling({"temperature": 0.6, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.1}, 0.8)
    assert got == {"temperature": 0.6, "top_p": 0.9, "top_k": 20, "repeat_penalty": 1.1}
    assert bv.sampling([1, 2], 0.8) == {"temperature": 0.8}  # not a mapping at all
    assert all(math.isfinite(v) for v in got.values())
