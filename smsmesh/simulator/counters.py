"""What the simulator has done so far, for tests, benchmarks and the log."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Counters"]


@dataclass(slots=True)
class Counters:
    """Running totals since start. Plain ints: read them, do not write them."""

    binds: int = 0  # binds accepted
    binds_refused: int = 0
    submits: int = 0  # submit_sm received, whatever the answer
    accepted: int = 0  # answered ESME_ROK with a message id
    throttled: int = 0  # answered ESME_RTHROTTLED
    errors: int = 0  # answered ESME_RSYSERR by error_rate
    invalid: int = 0  # refused as malformed (e.g. no destination)
    receipts_sent: int = 0  # receipt deliver_sm sent, retries included
    receipts_acked: int = 0  # answered with deliver_sm_resp ESME_ROK
    receipts_failed: int = 0  # given up after the last attempt
    receipts_dropped: int = 0  # discarded because a queue was at its bound
    mo_sent: int = 0  # MO messages acknowledged by the client (all parts)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
