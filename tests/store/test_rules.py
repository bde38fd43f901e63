"""The backend-independent receipt rules that have a shortcut worth checking exhaustively."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smsmesh.model import MessageStatus, ReceiptState
from smsmesh.smpp.receipt import id_candidates
from smsmesh.store.rules import final_outcome, has_several_readings

_IDS = st.one_of(
    st.text("0123456789", max_size=40),
    st.text("0123456789abcdef", max_size=40),
    st.text("0123456789abcdefxyz-", max_size=40),
)


@given(_IDS)
def test_several_readings_is_what_the_candidates_say(smsc_id: str) -> None:
    received = id_candidates(smsc_id)[0]
    stripped = received.lstrip("0") or "0"
    assert has_several_readings(received) == (len(id_candidates(stripped)) > 1)


@given(st.sampled_from([None, "", *[s.value for s in ReceiptState]]))
def test_the_one_part_shortcut_agrees_with_the_general_rule(state: str | None) -> None:
    """final_outcome of one part equals the general rule applied to a message whose two
    parts both got that receipt (the first failed part decides, so part 1 does)."""
    one = final_outcome([(1, state, "7")])
    assert one == final_outcome([(2, state, "7"), (1, state, "7")])
    if one is not None and one[0] is not MessageStatus.DELIVERED:
        assert one[1] == f"part 1: {state} (err 7)"
