"""Delivery receipts: parsing, state normalisation and message-id correlation forms."""

from __future__ import annotations

import string

_HEX = frozenset(string.hexdigits)


def id_candidates(smsc_id: str) -> tuple[str, ...]:
    """Every form in which an SMSC may quote the same message id, canonical form first.

    Carriers are known to return an id in decimal in submit_sm_resp and in hex in the
    receipt (or the other way round), with or without leading zeros, in either case.
    The store matches a receipt against a submit when any candidate is equal.
    """
    raw = smsc_id.strip().lower()
    out: list[str] = [raw]

    def add(value: str) -> None:
        if value and value not in out:
            out.append(value)

    stripped = raw.lstrip("0") or "0"
    add(stripped)
    if raw.isdigit():
        add(format(int(raw, 10), "x"))
    if raw and all(c in _HEX for c in raw) and len(raw) <= 32:
        add(str(int(raw, 16)))
    return tuple(out)
