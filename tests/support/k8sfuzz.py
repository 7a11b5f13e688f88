"""Kubernetes values and anything shaped like one, for the fuzzers (a
hypothesis strategy: support.k8sbytes itself needs no hypothesis, so the
benchmarks can use it)."""

from __future__ import annotations

from hypothesis import strategies as st

from support import k8sbytes as K

#: a secret payload no masked output may hold
SECRET = b"\x00\x01TOPSECRETVALUE\xff\xfe" * 3


def _valid_values():
    """Whole objects of every kind the decoder knows."""
    return st.sampled_from([
        K.pod("p", "ns"), K.secret("s", "ns", {"a": SECRET}), K.deployment("d", "ns"),
        K.configmap("c", "ns", {"a": "b"}), K.json_object("v1", "Secret", "j", "ns",
                                                           data={"a": "QUJD"}),
        K.encrypted(),
    ])


#: Kubernetes values and anything shaped like one: whole, cut, a byte changed
envelopes = st.one_of(
    st.binary(max_size=300).map(lambda b: b"k8s\x00" + b),
    st.binary(max_size=100).map(lambda b: b"k8s:enc:" + b),
    st.binary(max_size=200).map(lambda b: b"{" + b),
    st.tuples(_valid_values(), st.integers(0, 400)).map(lambda t: t[0][:t[1]]),
    st.tuples(_valid_values(), st.integers(0, 400), st.integers(0, 255)).map(
        lambda t: t[0][:t[1] % max(1, len(t[0]))] + bytes([t[2]]) + t[0][t[1] % max(1, len(
            t[0])) + 1:]),
    st.binary(max_size=300),
)
