"""Phone numbers and message texts are masked in logs unless SMSMESH_LOG_UNMASKED=1."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsmesh import logmask
from smsmesh.logmask import MaskingFormatter, mask_phone_numbers, message_text


@pytest.fixture(autouse=True)
def masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(logmask.UNMASKED_ENV, raising=False)


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("to +4915112345678 now", "to +49*********78 now"),
        ("to 004915112345678", "to 0049*********78"),
        ('{"to": "4915112345678"}', '{"to": "49*********78"}'),
        ("+14155550123", "+1********23"),  # one-digit country code
        ("+35312345678", "+353******78"),  # three-digit country code
        ("+31612345678,+447400123456", "+31*******78,+44********56"),
        # Left alone: unix times, decimals, short ids, digits inside identifiers.
        ("at 1714564800 and 1714564800.123", "at 1714564800 and 1714564800.123"),
        ("smsc id 123456789", "smsc id 123456789"),
        ("id 01hx4915112345678zz", "id 01hx4915112345678zz"),
        ("+1234567", "+1234567"),  # too short to be a number
        ("port 8080, 42 messages", "port 8080, 42 messages"),
    ],
)
def test_numbers_keep_country_code_and_last_two_digits(raw: str, masked: str) -> None:
    assert mask_phone_numbers(raw) == masked


@given(
    st.sampled_from(["1", "31", "44", "49", "353", "880"]),
    st.text("0123456789", min_size=7, max_size=12),
    st.sampled_from(["+", "00", ""]),
    st.sampled_from([" ", "=", '"', "(", ": "]),
)
def test_no_whole_number_survives(cc: str, rest: str, prefix: str, sep: str) -> None:
    digits = (cc + rest)[:15]
    if prefix == "" and len(digits) < 11:
        digits = (digits + "1234567890")[:11]
    line = f"sending{sep}{prefix}{digits}{sep}done"
    out = mask_phone_numbers(line)
    assert digits not in out
    assert f"{prefix}{digits[: len(cc)]}" in out  # the country code stays readable
    assert out.endswith(f"{digits[-2:]}{sep}done")
    assert len(out) == len(line)


def test_message_text_shows_only_its_length(monkeypatch: pytest.MonkeyPatch) -> None:
    text = message_text("Your code is 123456")
    assert str(text) == "<text: 19 chars>"
    assert repr(text) == "<text: 19 chars>"
    monkeypatch.setenv(logmask.UNMASKED_ENV, "1")
    assert str(text) == "Your code is 123456"


def test_installed_formatter_masks_lines_and_tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logmask.install([handler])
    logmask.install([handler])  # twice: still one layer
    assert isinstance(handler.formatter, MaskingFormatter)
    assert not isinstance(handler.formatter.inner, MaskingFormatter)
    log = logging.getLogger("test.logmask")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        log.info("to %s text %s", "+4915112345678", message_text("secret 99"))
        try:
            raise ValueError("bad destination 4915112345678")
        except ValueError:
            log.exception("failed")
        monkeypatch.setenv(logmask.UNMASKED_ENV, "1")
        log.info("clear %s %s", "+4915112345678", message_text("secret 99"))
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue()
    masked, unmasked = lines.split("INFO clear ")
    assert "INFO to +49*********78 text <text: 9 chars>" in masked
    assert "ValueError: bad destination 49*********78" in masked
    assert "4915112345678" not in masked
    assert "secret" not in masked
    assert unmasked.strip() == "+4915112345678 secret 99"


def _log_in_a_process(env: dict[str, str]) -> str:
    code = (
        "import logging\n"
        "from smsmesh import runtime\n"
        "from smsmesh.logmask import message_text\n"
        "runtime.setup_logging('INFO')\n"
        "logging.getLogger('smsmesh.x').info('to %s: %s', '+4915112345678', "
        "message_text('hello there'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_setup_logging_masks_by_default_and_unmasks_on_request() -> None:
    import os

    base = {k: v for k, v in os.environ.items() if k != logmask.UNMASKED_ENV}
    masked = _log_in_a_process(base)
    assert "to +49*********78: <text: 11 chars>" in masked
    clear = _log_in_a_process({**base, logmask.UNMASKED_ENV: "1"})
    assert "to +4915112345678: hello there" in clear
