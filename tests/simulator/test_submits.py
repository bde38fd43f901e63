"""Binds and submits over real sockets: credentials, message ids, throttling, errors."""

from __future__ import annotations

import asyncio
import logging

import pytest

from smsmesh.simulator import SettingsError
from smsmesh.smpp import (
    BindError,
    BindType,
    CommandStatus,
    QuerySm,
    SubmitSmResp,
    Tag,
    Tlv,
    bind,
    connect,
)

from .conftest import WAIT, OpenEsme, StartSimulator, receipt_of

S = CommandStatus


async def test_bind_with_good_credentials_is_accepted(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(system_id="acme", password="s3cret")
    await open_esme(sim, system_id="acme", password="s3cret")
    await sim.wait_sessions(1, WAIT)
    assert sim.counters.binds == 1


@pytest.mark.parametrize(
    ("system_id", "password", "status"),
    [("acme", "wrong", S.ESME_RINVPASWD), ("other", "s3cret", S.ESME_RINVSYSID)],
)
async def test_bind_with_bad_credentials_is_refused_with_the_reason(
    start_simulator: StartSimulator,
    caplog: pytest.LogCaptureFixture,
    system_id: str,
    password: str,
    status: int,
) -> None:
    sim = await start_simulator(system_id="acme", password="s3cret")
    caplog.set_level(logging.DEBUG)
    session = await connect("127.0.0.1", sim.port)
    with pytest.raises(BindError) as info:
        await bind(session, BindType.TRANSMITTER, system_id, password, timeout=WAIT)
    assert info.value.status == status
    await asyncio.wait_for(session.wait_closed(), WAIT)
    assert (sim.counters.binds, sim.counters.binds_refused, sim.sessions) == (0, 1, 0)
    assert system_id in caplog.text  # the refusal is logged with who tried
    assert "s3cret" not in caplog.text
    assert "wrong" not in caplog.text


async def test_without_credentials_any_bind_is_accepted(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    await open_esme(sim, system_id="anyone", password="anything")
    await open_esme(sim, BindType.RECEIVER, system_id="someone", password="")
    await sim.wait_sessions(2, WAIT)


async def test_decimal_ids_are_distinct_and_recorded(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(id_style="decimal")
    esme = await open_esme(sim)
    responses = [await esme.submit(short_message=f"m{n}".encode()) for n in range(3)]
    ids = [r.message_id for r in responses if isinstance(r, SubmitSmResp)]
    assert len(set(ids)) == 3
    assert all(i.isdigit() for i in ids)
    assert [r.message_id for r in sim.received] == ids
    assert [r.text for r in sim.received] == ["m0", "m1", "m2"]
    record = sim.received[0]
    assert (record.system_id, record.source, record.destination) == (
        "esme",
        "12345",
        "4915123456789",
    )
    assert record.command_status == S.ESME_ROK


@pytest.mark.parametrize("style", ["decimal", "hex", "hex-receipt"])
async def test_receipt_quotes_the_id_per_id_style(
    start_simulator: StartSimulator, open_esme: OpenEsme, style: str
) -> None:
    sim = await start_simulator(id_style=style, first_message_id=0xABCDEF)
    esme = await open_esme(sim)
    response = await esme.submit(registered_delivery=1)
    assert isinstance(response, SubmitSmResp)
    receipt = receipt_of(await esme.next())
    quoted = receipt.smsc_message_id
    if style == "decimal":
        assert response.message_id == quoted == str(0xABCDEF)
    elif style == "hex":
        assert response.message_id == quoted == "abcdef"
    else:
        assert response.message_id == str(0xABCDEF)
        assert quoted == "abcdef"  # the same number, in hex: the connector must join them
        assert int(response.message_id) == int(quoted, 16)


async def test_submit_without_destination_is_refused(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    esme = await open_esme(sim)
    response = await esme.submit(destination_addr="", registered_delivery=1)
    assert response.command_status == S.ESME_RINVDSTADR
    assert sim.counters.invalid == 1
    assert sim.received[0].message_id == ""


async def test_unsupported_requests_get_invalid_command(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    esme = await open_esme(sim)
    assert esme.session is not None
    response = await esme.session.request(QuerySm(message_id="1"), WAIT)
    assert response.command_status == S.ESME_RINVCMDID


async def test_throttle_answers_throttled_above_the_rate(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    rate = 20
    sim = await start_simulator(throttle_tps=rate)
    esme = await open_esme(sim, window=100)
    loop = asyncio.get_running_loop()
    started = loop.time()
    responses = await asyncio.gather(*(esme.submit() for _ in range(100)))
    elapsed = loop.time() - started
    statuses = [r.command_status for r in responses]
    accepted = statuses.count(S.ESME_ROK)
    throttled = statuses.count(S.ESME_RTHROTTLED)
    assert accepted + throttled == 100
    # one second's burst, plus what the rate refilled while the burst was answered
    assert rate <= accepted <= rate + rate * elapsed + 1
    assert sim.counters.throttled == throttled > 0
    assert sum(1 for r in sim.received if r.command_status == S.ESME_RTHROTTLED) == throttled


async def test_throttle_can_be_lifted_live(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(throttle_tps=1)
    esme = await open_esme(sim)
    assert (await esme.submit()).command_status == S.ESME_ROK
    assert (await esme.submit()).command_status == S.ESME_RTHROTTLED
    sim.set_behaviour(throttle_tps=None)
    assert (await esme.submit()).command_status == S.ESME_ROK


async def test_error_rate_is_roughly_honoured_and_reproducible_with_a_seed(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    patterns = []
    for _ in range(2):
        sim = await start_simulator(error_rate=0.3, seed=11)
        esme = await open_esme(sim, window=100)
        responses = await asyncio.gather(*(esme.submit() for _ in range(400)))
        failed = [r.command_status == S.ESME_RSYSERR for r in responses]
        assert all(r.command_status in (S.ESME_ROK, S.ESME_RSYSERR) for r in responses)
        assert 0.22 < sum(failed) / 400 < 0.38
        assert sim.counters.errors == sum(failed)
        patterns.append([r.command_status for r in sim.received])
    assert patterns[0] == patterns[1]


async def test_multipart_submit_gets_an_id_and_a_receipt_per_part(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    esme = await open_esme(sim)
    ids = []
    for part in (1, 2):
        udh = bytes((0x05, 0x00, 0x03, 0x07, 0x02, part))
        response = await esme.submit(
            esm_class=0x40, short_message=udh + f"part {part}".encode(), registered_delivery=1
        )
        assert isinstance(response, SubmitSmResp)
        ids.append(response.message_id)
    # SAR-style third message of another reference
    response = await esme.submit(
        short_message=b"sar",
        registered_delivery=1,
        tlvs=(
            Tlv.u16(Tag.SAR_MSG_REF_NUM, 513),
            Tlv.u8(Tag.SAR_TOTAL_SEGMENTS, 1),
            Tlv.u8(Tag.SAR_SEGMENT_SEQNUM, 1),
        ),
    )
    assert isinstance(response, SubmitSmResp)
    ids.append(response.message_id)
    assert len(set(ids)) == 3
    receipts = {receipt_of(await esme.next()).smsc_message_id for _ in range(3)}
    assert receipts == set(ids)
    concat = [r.concat for r in sim.received]
    assert [(c.reference, c.total, c.part) for c in concat if c] == [
        (7, 2, 1),
        (7, 2, 2),
        (513, 1, 1),
    ]
    assert [r.text for r in sim.received] == ["part 1", "part 2", "sar"]


async def test_set_behaviour_refuses_what_cannot_change_live(
    start_simulator: StartSimulator,
) -> None:
    sim = await start_simulator()
    with pytest.raises(SettingsError, match="cannot change port"):
        sim.set_behaviour(port=1)
    with pytest.raises(SettingsError, match="error_rate"):
        sim.set_behaviour(error_rate=2)
    assert sim.settings.error_rate == 0


async def test_messages_are_logged_at_debug_only_and_never_their_text(
    start_simulator: StartSimulator, open_esme: OpenEsme, caplog: pytest.LogCaptureFixture
) -> None:
    sim = await start_simulator()
    esme = await open_esme(sim)
    caplog.set_level(logging.DEBUG, logger="smsmesh.simulator")
    await esme.submit(short_message=b"code 987654", registered_delivery=1)
    await sim.wait_for(lambda: sim.counters.receipts_acked == 1, WAIT)
    records = [r for r in caplog.records if r.name == "smsmesh.simulator"]
    assert records  # per-message lines exist at DEBUG...
    assert all(r.levelno == logging.DEBUG for r in records)  # ...and only there
    assert "987654" not in caplog.text
