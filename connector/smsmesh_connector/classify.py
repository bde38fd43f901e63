"""What a submit_sm_resp status means for the message that was submitted.

SMSCs differ in the statuses they use, so the classes are deliberately coarse:
throttling is retried in place after backing off (the SMSC did not take the message,
so re-sending it duplicates nothing); transient faults go back to the durable queue
(attempts are counted and bounded); a few refusals that another carrier may not share
fail over to the next target of the route; everything that concerns the message itself
(bad number, bad text) is final.
"""

from __future__ import annotations

from enum import Enum

from smsmesh.smpp.pdu import CommandStatus


class Disposition(Enum):
    OK = "ok"
    THROTTLED = "throttled"  # back off and send the same PDU again
    RETRY = "retry"  # requeue durably, try again later on the same connection
    FAILOVER = "failover"  # requeue on the route's next target
    REJECTED = "rejected"  # final: the message itself is unacceptable


_THROTTLED = {CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL}
_FAILOVER = {
    CommandStatus.ESME_RINVSRCADR,
    CommandStatus.ESME_RINVSERTYP,
    CommandStatus.ESME_RX_R_APPN,
    CommandStatus.ESME_RSUBMITFAIL,
}
_REJECTED = {
    CommandStatus.ESME_RINVMSGLEN,
    CommandStatus.ESME_RINVDSTADR,
    CommandStatus.ESME_RINVDSTTON,
    CommandStatus.ESME_RINVDSTNPI,
    CommandStatus.ESME_RINVESMCLASS,
    CommandStatus.ESME_RINVNUMDESTS,
    CommandStatus.ESME_RINVREGDLVFLG,
    CommandStatus.ESME_RINVEXPIRY,
    CommandStatus.ESME_RINVDFTMSGID,
    CommandStatus.ESME_RX_P_APPN,
    CommandStatus.ESME_RINVOPTPARAMVAL,
    CommandStatus.ESME_RINVOPTPARSTREAM,
    CommandStatus.ESME_ROPTPARNOTALLWD,
    CommandStatus.ESME_RINVPARLEN,
    CommandStatus.ESME_RMISSINGOPTPARAM,
}


def classify(status: int) -> Disposition:
    if status == CommandStatus.ESME_ROK:
        return Disposition.OK
    if status in _THROTTLED:
        return Disposition.THROTTLED
    if status in _FAILOVER:
        return Disposition.FAILOVER
    if status in _REJECTED:
        return Disposition.REJECTED
    return Disposition.RETRY  # ESME_RSYSERR, ESME_RX_T_APPN, vendor codes, ...


def status_name(status: int) -> str:
    try:
        return CommandStatus(status).name
    except ValueError:
        return f"0x{status:08X}"
