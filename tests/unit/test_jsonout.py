"""boltfix.jsonout: json.dumps' text, streamed without recursion."""

from __future__ import annotations

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from boltfix import jsonout

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids,
                                                               max_size=4),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(JSON, st.booleans())
def test_the_text_is_json_dumps(obj, ascii_only):
    assert "".join(jsonout.iterencode(obj, ensure_ascii=ascii_only)) == \
        json.dumps(obj, indent=2, ensure_ascii=ascii_only)


def test_deep_nesting_does_not_recurse():
    obj: list = []
    for _ in range(20_000):
        obj = [obj]
    out = io.StringIO()
    jsonout.dump(obj, out, chunk=100)
    text = out.getvalue()
    assert text.endswith("]\n") and text.count("[") == 20_001


def test_default_and_keys():
    out = io.StringIO()
    obj = {1: b"x", None: 2.5, False: [], 1.5: "f"}
    jsonout.dump(obj, out, default=lambda o: o.decode())
    assert out.getvalue() == json.dumps(obj, indent=2, default=lambda o: o.decode()) + "\n"
    assert json.loads(out.getvalue()) == {"1": "x", "null": 2.5, "false": [], "1.5": "f"}
