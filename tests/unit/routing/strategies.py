"""Hypothesis strategies shared by the routing property tests."""
from __future__ import annotations

from hypothesis import strategies as st

from routing.rules import GENERALISE_KINDS, Transform

transforms = st.one_of(
    st.sampled_from([Transform("keep"), Transform("drop"), Transform("mask"), Transform("pseudonymise", "k")]),
    st.sampled_from(GENERALISE_KINDS).map(lambda kind: Transform("generalise", kind)),
)
