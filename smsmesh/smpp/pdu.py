"""SMPP 3.4 protocol data units as plain values.

Each PDU is a small slots dataclass whose fields are the mandatory parameters of the
specification, in wire order, plus the header fields every PDU has (sequence_number,
command_status) and its optional parameters (`tlvs`, wire order kept, unknown and vendor
tags preserved so a proxy can pass them on). The classes know nothing about bytes: the
codec (`smsmesh.smpp.codec`) turns them into frames and back, and the session
(`smsmesh.smpp.session`) decides which of them may be sent when.

Strings are `str` (C-Octet strings, mapped 1:1 to bytes with latin-1 so any byte an
SMSC sends survives a round trip); `short_message` is `bytes` because its meaning depends
on data_coding, which is the text module's business.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from enum import IntEnum
from typing import Any, ClassVar, NamedTuple

__all__ = [
    "ESM_CLASS_DELIVERY_RECEIPT",
    "ESM_CLASS_INTERMEDIATE_NOTIFICATION",
    "ESM_CLASS_MESSAGE_TYPE_MASK",
    "ESM_CLASS_UDHI",
    "PDU_CLASSES",
    "REGISTERED_DELIVERY_FAILURE",
    "REGISTERED_DELIVERY_NONE",
    "REGISTERED_DELIVERY_SUCCESS_OR_FAILURE",
    "RESPONSE_BIT",
    "TLV_FIXED_SIZES",
    "AlertNotification",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "BindType",
    "CancelSm",
    "CancelSmResp",
    "CommandId",
    "CommandStatus",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "DestAddress",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "MessageState",
    "Outbind",
    "Pdu",
    "QuerySm",
    "QuerySmResp",
    "ReplaceSm",
    "ReplaceSmResp",
    "SubmitMulti",
    "SubmitMultiResp",
    "SubmitSm",
    "SubmitSmResp",
    "Tag",
    "Tlv",
    "Unbind",
    "UnbindResp",
    "UnsuccessSme",
    "body_field_names",
    "is_response",
    "make_nack",
    "make_response",
]

RESPONSE_BIT = 0x80000000


class CommandId(IntEnum):
    """command_id values of SMPP 3.4 (section 5.1.2.1)."""

    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


class CommandStatus(IntEnum):
    """command_status (error code) values of SMPP 3.4 (section 5.1.3)."""

    ESME_ROK = 0x00000000
    ESME_RINVMSGLEN = 0x00000001
    ESME_RINVCMDLEN = 0x00000002
    ESME_RINVCMDID = 0x00000003
    ESME_RINVBNDSTS = 0x00000004
    ESME_RALYBND = 0x00000005
    ESME_RINVPRTFLG = 0x00000006
    ESME_RINVREGDLVFLG = 0x00000007
    ESME_RSYSERR = 0x00000008
    ESME_RINVSRCADR = 0x0000000A
    ESME_RINVDSTADR = 0x0000000B
    ESME_RINVMSGID = 0x0000000C
    ESME_RBINDFAIL = 0x0000000D
    ESME_RINVPASWD = 0x0000000E
    ESME_RINVSYSID = 0x0000000F
    ESME_RCANCELFAIL = 0x00000011
    ESME_RREPLACEFAIL = 0x00000013
    ESME_RMSGQFUL = 0x00000014
    ESME_RINVSERTYP = 0x00000015
    ESME_RINVNUMDESTS = 0x00000033
    ESME_RINVDLNAME = 0x00000034
    ESME_RINVDESTFLAG = 0x00000040
    ESME_RINVSUBREP = 0x00000042
    ESME_RINVESMCLASS = 0x00000043
    ESME_RCNTSUBDL = 0x00000044
    ESME_RSUBMITFAIL = 0x00000045
    ESME_RINVSRCTON = 0x00000048
    ESME_RINVSRCNPI = 0x00000049
    ESME_RINVDSTTON = 0x00000050
    ESME_RINVDSTNPI = 0x00000051
    ESME_RINVSYSTYP = 0x00000053
    ESME_RINVREPFLAG = 0x00000054
    ESME_RINVNUMMSGS = 0x00000055
    ESME_RTHROTTLED = 0x00000058
    ESME_RINVSCHED = 0x00000061
    ESME_RINVEXPIRY = 0x00000062
    ESME_RINVDFTMSGID = 0x00000063
    ESME_RX_T_APPN = 0x00000064
    ESME_RX_P_APPN = 0x00000065
    ESME_RX_R_APPN = 0x00000066
    ESME_RQUERYFAIL = 0x00000067
    ESME_RINVOPTPARSTREAM = 0x000000C0
    ESME_ROPTPARNOTALLWD = 0x000000C1
    ESME_RINVPARLEN = 0x000000C2
    ESME_RMISSINGOPTPARAM = 0x000000C3
    ESME_RINVOPTPARAMVAL = 0x000000C4
    ESME_RDELIVERYFAILURE = 0x000000FE
    ESME_RUNKNOWNERR = 0x000000FF

    @classmethod
    def describe(cls, value: int) -> str:
        """The constant's name, or hex for vendor-specific codes (0x400-0x4FF and others)."""
        try:
            return cls(value).name
        except ValueError:
            return f"0x{value:08X}"


class Tag(IntEnum):
    """Optional parameter tags of SMPP 3.4 (section 5.3.2)."""

    DEST_ADDR_SUBUNIT = 0x0005
    DEST_NETWORK_TYPE = 0x0006
    DEST_BEARER_TYPE = 0x0007
    DEST_TELEMATICS_ID = 0x0008
    SOURCE_ADDR_SUBUNIT = 0x000D
    SOURCE_NETWORK_TYPE = 0x000E
    SOURCE_BEARER_TYPE = 0x000F
    SOURCE_TELEMATICS_ID = 0x0010
    QOS_TIME_TO_LIVE = 0x0017
    PAYLOAD_TYPE = 0x0019
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D
    RECEIPTED_MESSAGE_ID = 0x001E
    MS_MSG_WAIT_FACILITIES = 0x0030
    PRIVACY_INDICATOR = 0x0201
    SOURCE_SUBADDRESS = 0x0202
    DEST_SUBADDRESS = 0x0203
    USER_MESSAGE_REFERENCE = 0x0204
    USER_RESPONSE_CODE = 0x0205
    SOURCE_PORT = 0x020A
    DESTINATION_PORT = 0x020B
    SAR_MSG_REF_NUM = 0x020C
    LANGUAGE_INDICATOR = 0x020D
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    CALLBACK_NUM_PRES_IND = 0x0302
    CALLBACK_NUM_ATAG = 0x0303
    NUMBER_OF_MESSAGES = 0x0304
    CALLBACK_NUM = 0x0381
    DPF_RESULT = 0x0420
    SET_DPF = 0x0421
    MS_AVAILABILITY_STATUS = 0x0422
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    DELIVERY_FAILURE_REASON = 0x0425
    MORE_MESSAGES_TO_SEND = 0x0426
    MESSAGE_STATE = 0x0427
    USSD_SERVICE_OP = 0x0501
    DISPLAY_TIME = 0x1201
    SMS_SIGNAL = 0x1203
    MS_VALIDITY = 0x1204
    ALERT_ON_MESSAGE_DELIVERY = 0x130C
    ITS_REPLY_TYPE = 0x1380
    ITS_SESSION_INFO = 0x1383


# Tags whose value has one fixed size in 3.4; a different length is ESME_RINVPARLEN.
# Only tags whose size is unambiguous in the specification are listed, so that a
# carrier's slightly odd but harmless TLV is not refused.
TLV_FIXED_SIZES: dict[int, int] = {
    Tag.DEST_ADDR_SUBUNIT: 1,
    Tag.SOURCE_ADDR_SUBUNIT: 1,
    Tag.DEST_NETWORK_TYPE: 1,
    Tag.SOURCE_NETWORK_TYPE: 1,
    Tag.DEST_BEARER_TYPE: 1,
    Tag.SOURCE_BEARER_TYPE: 1,
    Tag.QOS_TIME_TO_LIVE: 4,
    Tag.PAYLOAD_TYPE: 1,
    Tag.MS_MSG_WAIT_FACILITIES: 1,
    Tag.PRIVACY_INDICATOR: 1,
    Tag.USER_MESSAGE_REFERENCE: 2,
    Tag.USER_RESPONSE_CODE: 1,
    Tag.SOURCE_PORT: 2,
    Tag.DESTINATION_PORT: 2,
    Tag.SAR_MSG_REF_NUM: 2,
    Tag.LANGUAGE_INDICATOR: 1,
    Tag.SAR_TOTAL_SEGMENTS: 1,
    Tag.SAR_SEGMENT_SEQNUM: 1,
    Tag.SC_INTERFACE_VERSION: 1,
    Tag.CALLBACK_NUM_PRES_IND: 1,
    Tag.NUMBER_OF_MESSAGES: 1,
    Tag.DPF_RESULT: 1,
    Tag.SET_DPF: 1,
    Tag.MS_AVAILABILITY_STATUS: 1,
    Tag.NETWORK_ERROR_CODE: 3,
    Tag.DELIVERY_FAILURE_REASON: 1,
    Tag.MORE_MESSAGES_TO_SEND: 1,
    Tag.MESSAGE_STATE: 1,
    Tag.DISPLAY_TIME: 1,
    Tag.SMS_SIGNAL: 2,
    Tag.MS_VALIDITY: 1,
    Tag.ITS_REPLY_TYPE: 1,
    Tag.ITS_SESSION_INFO: 2,
}


class MessageState(IntEnum):
    """message_state values (section 5.2.28), as carried by query_sm_resp and receipts."""

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8


# esm_class bits (section 5.2.12).
ESM_CLASS_UDHI = 0x40  # short_message starts with a User Data Header
ESM_CLASS_MESSAGE_TYPE_MASK = 0x3C
ESM_CLASS_DELIVERY_RECEIPT = 0x04  # deliver_sm carries an SMSC delivery receipt
ESM_CLASS_INTERMEDIATE_NOTIFICATION = 0x20

# registered_delivery values (section 5.2.17), SMSC delivery receipt bits.
REGISTERED_DELIVERY_NONE = 0x00
REGISTERED_DELIVERY_SUCCESS_OR_FAILURE = 0x01
REGISTERED_DELIVERY_FAILURE = 0x02

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class Tlv(NamedTuple):
    """One optional parameter exactly as on the wire (value without tag and length)."""

    tag: int
    value: bytes

    @classmethod
    def u8(cls, tag: int, value: int) -> Tlv:
        return cls(tag, _U8.pack(value))

    @classmethod
    def u16(cls, tag: int, value: int) -> Tlv:
        return cls(tag, _U16.pack(value))

    @classmethod
    def u32(cls, tag: int, value: int) -> Tlv:
        return cls(tag, _U32.pack(value))

    @classmethod
    def cstr(cls, tag: int, value: str) -> Tlv:
        """A C-Octet string value (e.g. receipted_message_id): NUL-terminated."""
        return cls(tag, value.encode("latin-1") + b"\0")

    def as_int(self) -> int:
        """The value read as a big-endian unsigned integer (any length)."""
        return int.from_bytes(self.value, "big")

    def as_str(self) -> str:
        """The value read as a C-Octet string; a missing terminator is tolerated."""
        raw = self.value
        nul = raw.find(0)
        return (raw if nul < 0 else raw[:nul]).decode("latin-1")


@dataclass(slots=True)
class Pdu:
    """Fields every PDU has. Subclasses add their mandatory parameters in wire order.

    `sequence_number` 0 on a request means "let the session number it".
    """

    command_id: ClassVar[CommandId]
    response_class: ClassVar[type[Pdu] | None] = None
    is_response: ClassVar[bool] = False

    sequence_number: int = 0
    command_status: int = 0
    tlvs: Sequence[Tlv] = ()

    def get_tlv(self, tag: int) -> bytes | None:
        """The value of the first optional parameter with this tag, or None."""
        for tlv in self.tlvs:
            if tlv.tag == tag:
                return tlv.value
        return None

    def get_tlv_int(self, tag: int) -> int | None:
        value = self.get_tlv(tag)
        return None if value is None else int.from_bytes(value, "big")

    def get_tlv_str(self, tag: int) -> str | None:
        """A C-Octet string parameter (receipted_message_id...) without its terminator."""
        for tlv in self.tlvs:
            if tlv.tag == tag:
                return tlv.as_str()
        return None

    def with_tlv(self, tlv: Tlv) -> Any:
        """A copy with one more optional parameter appended (replacing none)."""
        return replace(self, tlvs=(*self.tlvs, tlv))

    @property
    def status(self) -> CommandStatus | int:
        """command_status as the enum member when it is a standard one."""
        try:
            return CommandStatus(self.command_status)
        except ValueError:
            return self.command_status


# --- session management -------------------------------------------------------------


@dataclass(slots=True)
class _BindBase(Pdu):
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


@dataclass(slots=True)
class _BindRespBase(Pdu):
    is_response: ClassVar[bool] = True
    system_id: str = ""


@dataclass(slots=True)
class BindTransmitterResp(_BindRespBase):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER_RESP


@dataclass(slots=True)
class BindReceiverResp(_BindRespBase):
    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER_RESP


@dataclass(slots=True)
class BindTransceiverResp(_BindRespBase):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER_RESP


@dataclass(slots=True)
class BindTransmitter(_BindBase):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER
    response_class: ClassVar[type[Pdu] | None] = BindTransmitterResp


@dataclass(slots=True)
class BindReceiver(_BindBase):
    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER
    response_class: ClassVar[type[Pdu] | None] = BindReceiverResp


@dataclass(slots=True)
class BindTransceiver(_BindBase):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER
    response_class: ClassVar[type[Pdu] | None] = BindTransceiverResp


@dataclass(slots=True)
class Outbind(Pdu):
    """SMSC asks an ESME to bind (receiver) to it; has no response."""

    command_id: ClassVar[CommandId] = CommandId.OUTBIND
    system_id: str = ""
    password: str = ""


@dataclass(slots=True)
class UnbindResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.UNBIND_RESP
    is_response: ClassVar[bool] = True


@dataclass(slots=True)
class Unbind(Pdu):
    command_id: ClassVar[CommandId] = CommandId.UNBIND
    response_class: ClassVar[type[Pdu] | None] = UnbindResp


@dataclass(slots=True)
class EnquireLinkResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK_RESP
    is_response: ClassVar[bool] = True


@dataclass(slots=True)
class EnquireLink(Pdu):
    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK
    response_class: ClassVar[type[Pdu] | None] = EnquireLinkResp


@dataclass(slots=True)
class GenericNack(Pdu):
    """The answer to a PDU whose header was unusable or whose command is unknown."""

    command_id: ClassVar[CommandId] = CommandId.GENERIC_NACK
    is_response: ClassVar[bool] = True


# --- message submission and delivery ------------------------------------------------


@dataclass(slots=True)
class _ShortMessageBase(Pdu):
    """The shared body of submit_sm and deliver_sm (sections 4.4.1 and 4.6.1)."""

    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


@dataclass(slots=True)
class SubmitSmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM_RESP
    is_response: ClassVar[bool] = True
    message_id: str = ""


@dataclass(slots=True)
class SubmitSm(_ShortMessageBase):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM
    response_class: ClassVar[type[Pdu] | None] = SubmitSmResp


@dataclass(slots=True)
class DeliverSmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM_RESP
    is_response: ClassVar[bool] = True
    message_id: str = ""  # unused by 3.4, always empty from a compliant ESME


@dataclass(slots=True)
class DeliverSm(_ShortMessageBase):
    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM
    response_class: ClassVar[type[Pdu] | None] = DeliverSmResp


@dataclass(slots=True)
class DataSmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.DATA_SM_RESP
    is_response: ClassVar[bool] = True
    message_id: str = ""


@dataclass(slots=True)
class DataSm(Pdu):
    """Either direction; the message itself travels in the message_payload TLV."""

    command_id: ClassVar[CommandId] = CommandId.DATA_SM
    response_class: ClassVar[type[Pdu] | None] = DataSmResp
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0


@dataclass(frozen=True, slots=True)
class DestAddress:
    """One destination of submit_multi: an SME address (dest_flag 1) or a list name (2)."""

    dest_flag: int = 1
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""  # the SME address, or the distribution list name


@dataclass(frozen=True, slots=True)
class UnsuccessSme:
    """One destination that submit_multi could not accept, with its error code."""

    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    error_status_code: int = 0


@dataclass(slots=True)
class SubmitMultiResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_MULTI_RESP
    is_response: ClassVar[bool] = True
    message_id: str = ""
    unsuccess_smes: Sequence[UnsuccessSme] = ()


@dataclass(slots=True)
class SubmitMulti(Pdu):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_MULTI
    response_class: ClassVar[type[Pdu] | None] = SubmitMultiResp
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addresses: Sequence[DestAddress] = ()
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


# --- message management -------------------------------------------------------------


@dataclass(slots=True)
class QuerySmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.QUERY_SM_RESP
    is_response: ClassVar[bool] = True
    message_id: str = ""
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0


@dataclass(slots=True)
class QuerySm(Pdu):
    command_id: ClassVar[CommandId] = CommandId.QUERY_SM
    response_class: ClassVar[type[Pdu] | None] = QuerySmResp
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""


@dataclass(slots=True)
class CancelSmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.CANCEL_SM_RESP
    is_response: ClassVar[bool] = True


@dataclass(slots=True)
class CancelSm(Pdu):
    command_id: ClassVar[CommandId] = CommandId.CANCEL_SM
    response_class: ClassVar[type[Pdu] | None] = CancelSmResp
    service_type: str = ""
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""


@dataclass(slots=True)
class ReplaceSmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.REPLACE_SM_RESP
    is_response: ClassVar[bool] = True


@dataclass(slots=True)
class ReplaceSm(Pdu):
    command_id: ClassVar[CommandId] = CommandId.REPLACE_SM
    response_class: ClassVar[type[Pdu] | None] = ReplaceSmResp
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


@dataclass(slots=True)
class AlertNotification(Pdu):
    """SMSC tells a receiver that a handset became available; has no response."""

    command_id: ClassVar[CommandId] = CommandId.ALERT_NOTIFICATION
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    esme_addr_ton: int = 0
    esme_addr_npi: int = 0
    esme_addr: str = ""


PDU_CLASSES: dict[int, type[Pdu]] = {
    cls.command_id: cls
    for cls in (
        GenericNack,
        BindTransmitter,
        BindTransmitterResp,
        BindReceiver,
        BindReceiverResp,
        BindTransceiver,
        BindTransceiverResp,
        Outbind,
        Unbind,
        UnbindResp,
        EnquireLink,
        EnquireLinkResp,
        SubmitSm,
        SubmitSmResp,
        DeliverSm,
        DeliverSmResp,
        DataSm,
        DataSmResp,
        QuerySm,
        QuerySmResp,
        CancelSm,
        CancelSmResp,
        ReplaceSm,
        ReplaceSmResp,
        SubmitMulti,
        SubmitMultiResp,
        AlertNotification,
    )
}
"""command_id -> PDU class, for every PDU this package can encode and decode."""


def body_field_names(cls: type[Pdu]) -> tuple[str, ...]:
    """The mandatory parameters of a PDU class, in wire order."""
    return tuple(f.name for f in fields(cls) if f.name not in _HEADER_FIELDS)


_HEADER_FIELDS = frozenset(("sequence_number", "command_status", "tlvs"))


class BindType(enum.Enum):
    """The three ways to bind, each with its request and response class."""

    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"
    TRANSCEIVER = "transceiver"

    @property
    def request_class(self) -> type[Pdu]:
        return _BIND_REQUEST[self]

    @property
    def response_class(self) -> type[Pdu]:
        return _BIND_RESPONSE[self]

    @property
    def can_submit(self) -> bool:
        """The ESME may send messages (submit_sm, data_sm...) on this bind."""
        return self is not BindType.RECEIVER

    @property
    def can_receive(self) -> bool:
        """The SMSC may deliver messages (deliver_sm, data_sm...) on this bind."""
        return self is not BindType.TRANSMITTER

    @classmethod
    def of(cls, pdu_or_command_id: Pdu | int) -> BindType | None:
        """The bind type of a bind request or response, else None."""
        cid = (
            pdu_or_command_id
            if isinstance(pdu_or_command_id, int)
            else pdu_or_command_id.command_id
        )
        return _BIND_BY_COMMAND.get(cid & ~RESPONSE_BIT)


_BIND_REQUEST: dict[BindType, type[Pdu]] = {
    BindType.TRANSMITTER: BindTransmitter,
    BindType.RECEIVER: BindReceiver,
    BindType.TRANSCEIVER: BindTransceiver,
}
_BIND_RESPONSE: dict[BindType, type[Pdu]] = {
    BindType.TRANSMITTER: BindTransmitterResp,
    BindType.RECEIVER: BindReceiverResp,
    BindType.TRANSCEIVER: BindTransceiverResp,
}
_BIND_BY_COMMAND: dict[int, BindType] = {
    CommandId.BIND_TRANSMITTER: BindType.TRANSMITTER,
    CommandId.BIND_RECEIVER: BindType.RECEIVER,
    CommandId.BIND_TRANSCEIVER: BindType.TRANSCEIVER,
}


def is_response(pdu_or_command_id: Pdu | int) -> bool:
    """True for a response command id (high bit set, generic_nack included)."""
    if isinstance(pdu_or_command_id, int):
        return bool(pdu_or_command_id & RESPONSE_BIT)
    return pdu_or_command_id.is_response


def make_response(request: Pdu, status: int = CommandStatus.ESME_ROK, **fields: Any) -> Pdu:
    """The response to `request`: same sequence number, the given status and body fields.

    A request that has no response of its own (outbind, alert_notification) can only be
    refused, with a generic_nack; asking for a successful response to it is a ValueError.
    """
    if request.is_response:
        raise ValueError(f"{type(request).__name__} is a response; it has no response")
    resp_cls = request.response_class
    if resp_cls is None:
        if status == CommandStatus.ESME_ROK:
            raise ValueError(f"{type(request).__name__} has no response to succeed with")
        return GenericNack(sequence_number=request.sequence_number, command_status=status)
    return resp_cls(sequence_number=request.sequence_number, command_status=int(status), **fields)


def make_nack(sequence_number: int, status: int) -> GenericNack:
    """A generic_nack, for a PDU that could not be understood well enough to answer."""
    return GenericNack(sequence_number=sequence_number, command_status=int(status))
