"""The SMPP 3.4 session as a pure state machine (no sockets, no clock, no tasks).

In the manner of h11/h2: the caller feeds received bytes to `receive_data()` and gets
events back, calls `send()` for PDUs it wants to send, and writes whatever
`data_to_send()` returns to its transport. Keeping I/O out makes every protocol rule
testable byte for byte, and lets the same machine serve both roles: the connector (ESME),
the SMSC simulator and the SMPP front door (SMSC).

What the session does by itself, because no application could answer differently:
enquire_link is answered; unbind is answered (once every request the application was
given has been answered, so receipts can be made durable before the ack); a request not
allowed in the current state or role gets its response with ESME_RINVBNDSTS,
ESME_RALYBND or ESME_RINVCMDID; a malformed PDU whose frame was intact gets its response
(or a generic_nack) with the status the codec chose; a frame with an impossible
command_length gets generic_nack ESME_RINVCMDLEN and ends the session, because the
stream cannot be resynchronised.

Timers (response timeouts, keep-alive) belong to the I/O adapter (`smsmesh.smpp.aio`),
which calls `forget()` for a request it gave up on.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from smsmesh.smpp.codec import DEFAULT_MAX_PDU_SIZE, HEADER_SIZE, PduError, decode_at, encode
from smsmesh.smpp.pdu import (
    PDU_CLASSES,
    RESPONSE_BIT,
    BindType,
    CommandId,
    CommandStatus,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    Tag,
    UnbindResp,
)

__all__ = [
    "BindFailed",
    "BindRequested",
    "Bound",
    "ConnectionClosed",
    "EnquireLinkReceived",
    "Event",
    "LocalProtocolError",
    "ProtocolError",
    "RequestReceived",
    "ResponseReceived",
    "Role",
    "Session",
    "State",
    "UnbindRequested",
]

MAX_SEQUENCE = 0x7FFFFFFF
_LENGTH = struct.Struct(">I")


class Role(enum.Enum):
    ESME = "esme"  # the client: binds, submits messages, receives deliveries
    SMSC = "smsc"  # the server: accepts binds, delivers messages and receipts


class State(enum.Enum):
    OPEN = "open"  # connected, not bound
    BINDING = "binding"  # a bind is on its way and not answered yet
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"  # we sent unbind and wait for unbind_resp
    UNBIND_RECEIVED = "unbind_received"  # peer sent unbind; answering its last requests
    CLOSED = "closed"  # nothing more may be sent; the transport should be closed


BOUND_STATES = frozenset((State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX))
_STATE_OF_BIND = {
    BindType.TRANSMITTER: State.BOUND_TX,
    BindType.RECEIVER: State.BOUND_RX,
    BindType.TRANSCEIVER: State.BOUND_TRX,
}


class LocalProtocolError(Exception):
    """The application asked the session to do something SMPP does not allow now."""


# --- events ---------------------------------------------------------------------------


class Event:
    """Base class of everything `receive_data` reports."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class RequestReceived(Event):
    """A request the application must answer with `send(make_response(pdu, ...))`.

    outbind and alert_notification have no response and are reported here too.
    """

    pdu: Pdu


@dataclass(frozen=True, slots=True)
class ResponseReceived(Event):
    """The answer to one of our requests (`request` None for an unmatched generic_nack).

    A response that arrived malformed is reported as a generic_nack carrying the status
    the codec chose, so the request is settled rather than left to time out.
    """

    request: Pdu | None
    response: Pdu


@dataclass(frozen=True, slots=True)
class BindRequested(Event):
    """SMSC role: an ESME wants to bind; answer with the bind response via `send`."""

    pdu: Pdu


@dataclass(frozen=True, slots=True)
class Bound(Event):
    """ESME role: the SMSC accepted our bind."""

    bind_type: BindType


@dataclass(frozen=True, slots=True)
class BindFailed(Event):
    """ESME role: the SMSC refused our bind; the session is OPEN again."""

    status: int


@dataclass(frozen=True, slots=True)
class UnbindRequested(Event):
    """The peer wants to end the session; unbind_resp follows automatically."""

    pdu: Pdu


@dataclass(frozen=True, slots=True)
class EnquireLinkReceived(Event):
    """The peer probed the link; already answered. Useful as a liveness signal."""

    pdu: Pdu


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The peer closed the connection (end of stream)."""


@dataclass(frozen=True, slots=True)
class ProtocolError(Event):
    """The peer broke the protocol. Any answer is already queued.

    `fatal` means the session is CLOSED and the transport must be closed after sending
    what `data_to_send()` still returns.
    """

    status: int
    detail: str
    fatal: bool


# --- which request may travel in which direction and state ----------------------------

_C = CommandId
_SUBMITS = frozenset((_C.SUBMIT_SM, _C.SUBMIT_MULTI, _C.QUERY_SM, _C.CANCEL_SM, _C.REPLACE_SM))
_DELIVERIES = frozenset((_C.DELIVER_SM, _C.ALERT_NOTIFICATION))
_BINDS = frozenset((_C.BIND_TRANSMITTER, _C.BIND_RECEIVER, _C.BIND_TRANSCEIVER))


def _sender_role(cid: int) -> Role | None:
    """Which role may originate this request; None for either (enquire_link, unbind...)."""
    if cid in _SUBMITS or cid in _BINDS:
        return Role.ESME
    if cid in _DELIVERIES or cid == _C.OUTBIND:
        return Role.SMSC
    return None


def _name(cid: int) -> str:
    """A command's name as the errors say it (worked out only when there is one)."""
    return CommandId(cid).name.lower()


class Session:
    """One SMPP connection's protocol state, in either role. Not thread-safe."""

    def __init__(self, role: Role, *, max_pdu_size: int = DEFAULT_MAX_PDU_SIZE) -> None:
        if max_pdu_size < HEADER_SIZE:
            raise ValueError("max_pdu_size must be at least the header size")
        self.role = role
        self.max_pdu_size = max_pdu_size
        self.state = State.OPEN
        self.bind_type: BindType | None = None
        self.system_id: str | None = None  # the peer's, once known
        self.peer_interface_version: int | None = None
        self._next_seq = 1
        self._outstanding: dict[int, Pdu] = {}  # our requests awaiting the peer's answer
        self._inbound: dict[int, Pdu] = {}  # peer's requests awaiting our answer
        self._unbind_seq: int | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        self._buf = b""
        self._done_reading = False  # after CLOSED, further bytes are ignored
        self._eof = False

    # --- introspection ----------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """How many of our requests await a response."""
        return len(self._outstanding)

    @property
    def pending_inbound(self) -> int:
        """How many of the peer's requests await our response."""
        return len(self._inbound)

    @property
    def is_bound(self) -> bool:
        return self.state in BOUND_STATES

    def outstanding_request(self, sequence_number: int) -> Pdu | None:
        return self._outstanding.get(sequence_number)

    # --- sending ----------------------------------------------------------------------

    def send(self, pdu: Pdu) -> int:
        """Queue one PDU for sending and return its sequence number.

        A request with sequence_number 0 is numbered here (1..0x7FFFFFFF, wrapping,
        skipping numbers still outstanding). A response must answer a request the peer
        sent and this session reported. Raises LocalProtocolError when SMPP does not
        allow the PDU in this role and state, PduError when a field cannot be encoded.
        """
        if self.state is State.CLOSED:
            raise LocalProtocolError(f"cannot send {type(pdu).__name__}: session is closed")
        if pdu.is_response:
            self._send_response(pdu)
            return pdu.sequence_number
        self._check_outbound(pdu)
        given = pdu.sequence_number
        if given == 0:
            pdu.sequence_number = self._take_sequence()
        elif given in self._outstanding or not 0 < given <= MAX_SEQUENCE:
            raise LocalProtocolError(f"sequence_number {given} is in use or out of range")
        try:
            data = encode(pdu)
        except PduError:
            pdu.sequence_number = given
            raise
        seq = pdu.sequence_number
        if pdu.response_class is not None:
            self._outstanding[seq] = pdu
        cid = pdu.command_id
        if cid in _BINDS:
            self.state = State.BINDING
        elif cid == _C.UNBIND:
            self.state = State.UNBINDING
        self._queue(data)
        return seq

    def _take_sequence(self) -> int:
        seq = self._next_seq
        while seq in self._outstanding:  # only after a wrap-around; bounded by the window
            seq = seq + 1 if seq < MAX_SEQUENCE else 1
        self._next_seq = seq + 1 if seq < MAX_SEQUENCE else 1
        return seq

    def _check_outbound(self, pdu: Pdu) -> None:
        cid = pdu.command_id
        name = cid.name.lower()
        sender = _sender_role(cid)
        if sender is not None and sender is not self.role:
            raise LocalProtocolError(f"the {self.role.value.upper()} role cannot send {name}")
        state = self.state
        if cid == _C.ENQUIRE_LINK:
            return
        if cid in _BINDS or cid == _C.OUTBIND:
            if state is not State.OPEN:
                raise LocalProtocolError(f"cannot send {name} in state {state.name}")
            return
        if cid == _C.UNBIND:
            if state not in BOUND_STATES:
                raise LocalProtocolError(f"cannot send unbind in state {state.name}")
            return
        bind_type = self.bind_type
        if state not in BOUND_STATES or bind_type is None:
            raise LocalProtocolError(f"cannot send {name} in state {state.name}")
        allowed = bind_type.can_submit if self.role is Role.ESME else bind_type.can_receive
        if not allowed:
            raise LocalProtocolError(f"cannot send {name} on a {bind_type.value} bind")

    def _send_response(self, pdu: Pdu) -> None:
        seq = pdu.sequence_number
        request = self._inbound.get(seq)
        if request is None:
            raise LocalProtocolError(f"no request with sequence_number {seq} awaits an answer")
        cid = pdu.command_id
        if cid != _C.GENERIC_NACK and cid != request.command_id | RESPONSE_BIT:
            raise LocalProtocolError(
                f"{type(pdu).__name__} does not answer {type(request).__name__}"
            )
        data = encode(pdu)
        del self._inbound[seq]
        self._queue(data)
        bind_type = BindType.of(request)
        if bind_type is not None:  # SMSC answering a bind
            if pdu.command_status == CommandStatus.ESME_ROK and cid != _C.GENERIC_NACK:
                self._become_bound(bind_type, getattr(request, "system_id", ""))
                self.peer_interface_version = getattr(request, "interface_version", None)
            elif self.state is State.BINDING:
                self.state = State.OPEN
        if self.state is State.UNBIND_RECEIVED and not self._inbound:
            self._answer_unbind()

    def _become_bound(self, bind_type: BindType, system_id: str) -> None:
        self.state = _STATE_OF_BIND[bind_type]
        self.bind_type = bind_type
        self.system_id = system_id

    def _answer_unbind(self) -> None:
        assert self._unbind_seq is not None
        self._queue(encode(UnbindResp(sequence_number=self._unbind_seq)))
        self._unbind_seq = None
        self.state = State.CLOSED
        self._done_reading = True

    def finish_unbind(self) -> None:
        """Answer the peer's unbind now, abandoning requests the application still holds.

        For the adapter's grace timer: an application that never answers must not keep
        the peer waiting forever.
        """
        if self.state is State.UNBIND_RECEIVED:
            self._inbound.clear()
            self._answer_unbind()

    def forget(self, sequence_number: int) -> Pdu | None:
        """Stop waiting for the response to one of our requests (it timed out).

        A response arriving later is reported as a ProtocolError. Forgetting a bind
        returns the session to OPEN; forgetting an unbind closes it.
        """
        request = self._outstanding.pop(sequence_number, None)
        if request is not None:
            cid = request.command_id
            if cid in _BINDS and self.state is State.BINDING:
                self.state = State.OPEN
            elif cid == _C.UNBIND and self.state is State.UNBINDING:
                self.state = State.CLOSED
                self._done_reading = True
        return request

    def _queue(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)

    @property
    def pending_output(self) -> int:
        """How many bytes data_to_send() would return now."""
        return self._out_size

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call (b"" if nothing)."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._out_size = 0
        return data

    # --- receiving --------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes read from the transport (any split); b"" means end of stream."""
        events: list[Event] = []
        if not data:
            if not self._eof:
                self._eof = True
                self.state = State.CLOSED
                self._done_reading = True
                self._buf = b""
                events.append(ConnectionClosed())
            return events
        if self._done_reading:
            return events
        if not isinstance(data, bytes):
            data = bytes(data)
        buf = self._buf + data if self._buf else data
        end = len(buf)
        pos = 0
        max_size = self.max_pdu_size
        while end - pos >= 4:
            length: int = _LENGTH.unpack_from(buf, pos)[0]
            if length < HEADER_SIZE or length > max_size:
                self._fatal_length(buf, pos, end, length, events)
                return events
            if end - pos < length:
                break
            self._handle_frame(buf, pos, length, events)
            pos += length
            if self._done_reading:
                self._buf = b""
                return events
        self._buf = buf[pos:] if pos < end else b""
        return events

    def _fatal_length(
        self, buf: bytes, pos: int, end: int, length: int, events: list[Event]
    ) -> None:
        seq = int.from_bytes(buf[pos + 12 : pos + 16], "big") if end - pos >= HEADER_SIZE else 0
        self._queue(
            encode(GenericNack(sequence_number=seq, command_status=CommandStatus.ESME_RINVCMDLEN))
        )
        self.state = State.CLOSED
        self._done_reading = True
        self._buf = b""
        events.append(
            ProtocolError(
                CommandStatus.ESME_RINVCMDLEN,
                f"command_length {length} outside {HEADER_SIZE}..{self.max_pdu_size}",
                True,
            )
        )

    def _handle_frame(self, buf: bytes, pos: int, length: int, events: list[Event]) -> None:
        try:
            pdu = decode_at(buf, pos, length)
        except PduError as exc:
            self._on_malformed(exc, events)
            return
        if pdu.is_response:
            self._on_response(pdu, events)
        else:
            self._on_request(pdu, events)

    def _on_response(self, pdu: Pdu, events: list[Event]) -> None:
        seq = pdu.sequence_number
        cid = pdu.command_id
        request = self._outstanding.get(seq)
        if request is None:
            if cid == _C.GENERIC_NACK:
                events.append(ResponseReceived(None, pdu))
            else:
                events.append(
                    ProtocolError(
                        CommandStatus.ESME_RUNKNOWNERR,
                        f"{cid.name.lower()} for sequence_number {seq}, which is not outstanding",
                        False,
                    )
                )
            return
        if cid != _C.GENERIC_NACK and cid != request.command_id | RESPONSE_BIT:
            events.append(
                ProtocolError(
                    CommandStatus.ESME_RUNKNOWNERR,
                    f"{cid.name.lower()} cannot answer {request.command_id.name.lower()} "
                    f"(sequence_number {seq})",
                    False,
                )
            )
            return
        del self._outstanding[seq]
        events.append(ResponseReceived(request, pdu))
        rcid = request.command_id
        if rcid in _BINDS:
            if self.state is not State.BINDING:
                return
            status = pdu.command_status
            if status == CommandStatus.ESME_ROK and cid != _C.GENERIC_NACK:
                bind_type = BindType.of(rcid)
                assert bind_type is not None
                self._become_bound(bind_type, getattr(pdu, "system_id", ""))
                self.peer_interface_version = pdu.get_tlv_int(Tag.SC_INTERFACE_VERSION)
                events.append(Bound(bind_type))
            else:
                self.state = State.OPEN
                events.append(BindFailed(status or CommandStatus.ESME_RUNKNOWNERR))
        elif rcid == _C.UNBIND and self.state is State.UNBINDING:
            self.state = State.CLOSED
            self._done_reading = True

    def _on_request(self, pdu: Pdu, events: list[Event]) -> None:
        cid = pdu.command_id
        seq = pdu.sequence_number
        if cid == _C.ENQUIRE_LINK:
            self._queue(encode(EnquireLinkResp(sequence_number=seq)))
            events.append(EnquireLinkReceived(pdu))
            return
        if cid == _C.UNBIND:
            self._on_unbind(pdu, events)
            return
        refusal = self._refusal(cid)
        if refusal is not None:
            status, detail = refusal
            self._reply_error(pdu.__class__, seq, status)
            events.append(ProtocolError(status, detail, False))
            return
        if pdu.response_class is None:  # outbind, alert_notification
            events.append(RequestReceived(pdu))
            return
        if seq in self._inbound:
            status = CommandStatus.ESME_RSYSERR
            self._reply_error(pdu.__class__, seq, status)
            events.append(ProtocolError(status, f"sequence_number {seq} already pending", False))
            return
        self._inbound[seq] = pdu
        if cid in _BINDS:
            self.state = State.BINDING
            events.append(BindRequested(pdu))
        else:
            events.append(RequestReceived(pdu))

    def _refusal(self, cid: int) -> tuple[int, str] | None:
        """Why a request from the peer is not acceptable now, or None if it is."""
        sender = _sender_role(cid)
        if sender is not None and sender is self.role:
            return (
                CommandStatus.ESME_RINVCMDID,
                f"a {sender.value.upper()} does not accept {_name(cid)}",
            )
        state = self.state
        if state is State.UNBIND_RECEIVED:
            return CommandStatus.ESME_RINVBNDSTS, f"{_name(cid)} after unbind"
        if cid in _BINDS:
            if state is State.OPEN:
                return None
            if state is State.BINDING or state in BOUND_STATES:
                return CommandStatus.ESME_RALYBND, "already bound"
            return CommandStatus.ESME_RINVBNDSTS, f"{_name(cid)} in state {state.name}"
        if cid == _C.OUTBIND:
            if state is State.OPEN:
                return None
            return CommandStatus.ESME_RINVBNDSTS, f"outbind in state {state.name}"
        bind_type = self.bind_type
        if bind_type is None or (state not in BOUND_STATES and state is not State.UNBINDING):
            return CommandStatus.ESME_RINVBNDSTS, f"{_name(cid)} before bind (state {state.name})"
        allowed = bind_type.can_receive if self.role is Role.ESME else bind_type.can_submit
        if not allowed:
            return CommandStatus.ESME_RINVBNDSTS, f"{_name(cid)} on a {bind_type.value} bind"
        return None

    def _on_unbind(self, pdu: Pdu, events: list[Event]) -> None:
        state = self.state
        seq = pdu.sequence_number
        if state not in BOUND_STATES and state is not State.UNBINDING:
            status = CommandStatus.ESME_RINVBNDSTS
            self._queue(encode(UnbindResp(sequence_number=seq, command_status=status)))
            events.append(ProtocolError(status, f"unbind in state {state.name}", False))
            return
        events.append(UnbindRequested(pdu))
        self._unbind_seq = seq
        if self._inbound and state is not State.UNBINDING:
            self.state = State.UNBIND_RECEIVED
        else:
            self._inbound.clear()
            self._answer_unbind()

    def _reply_error(self, cls: type[Pdu], seq: int, status: int) -> None:
        resp_cls = cls.response_class
        if resp_cls is None:
            resp_cls = GenericNack
        self._queue(encode(resp_cls(sequence_number=seq, command_status=status)))

    def _on_malformed(self, exc: PduError, events: list[Event]) -> None:
        cid = exc.command_id
        seq = exc.sequence_number
        status = exc.command_status
        events.append(ProtocolError(status, str(exc), False))
        if cid & RESPONSE_BIT:
            request = self._outstanding.get(seq)
            if request is not None and cid in (_C.GENERIC_NACK, request.command_id | RESPONSE_BIT):
                self._on_response(GenericNack(sequence_number=seq, command_status=status), events)
            return
        cls = PDU_CLASSES.get(cid)
        self._reply_error(cls if cls is not None else GenericNack, seq, status)
