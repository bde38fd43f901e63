"""Shared helpers for the SMPP session tests: two in-memory sessions wired together."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from smsmesh.smpp.pdu import BindType, CommandStatus, make_response
from smsmesh.smpp.session import BindRequested, Event, Role, Session, State


def transfer(src: Session, dst: Session) -> list[Event]:
    """Deliver everything `src` has queued to `dst`; the events `dst` reports."""
    return dst.receive_data(src.data_to_send())


def bind_pair(bind_type: BindType = BindType.TRANSCEIVER) -> tuple[Session, Session]:
    """An ESME and an SMSC session bound to each other, nothing left in flight."""
    esme = Session(Role.ESME)
    smsc = Session(Role.SMSC)
    esme.send(bind_type.request_class(system_id="esme", password="secret"))
    (event,) = transfer(esme, smsc)
    assert isinstance(event, BindRequested)
    smsc.send(make_response(event.pdu, CommandStatus.ESME_ROK, system_id="smsc"))
    transfer(smsc, esme)
    assert esme.state is smsc.state
    assert esme.state in (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX)
    return esme, smsc


@pytest.fixture
def bound() -> Callable[[BindType], tuple[Session, Session]]:
    return bind_pair
