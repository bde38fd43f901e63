"""Keep phone numbers and message texts out of logs unless someone asks for them.

Logs travel further than the store: to a terminal, a log shipper, a ticket. So by
default every log line smsmesh writes is masked on its way out:

- E.164-looking phone numbers keep their country code and last two digits:
  `+4915112345678` -> `+49*********78`, `004915112345678` -> `0049*********78`, and
  bare digit runs of 11 to 15 digits (the store's form, `4915112345678`) the same.
  Shorter bare runs (unix times, counts, most SMSC message ids) are left alone; with
  `+` or `00` in front, 8 to 15 digits count as a number.
- Message texts are never written: code that wants to mention one logs
  `message_text(text)`, which prints as `<text: 42 chars>`.

`SMSMESH_LOG_UNMASKED=1` turns both off (for a developer chasing a problem on their own
machine); it is read when a line is written, so it can be flipped without a restart
of the logging setup. `install()` puts the masking on the root logger's handlers by
wrapping their formatters, so whatever format a handler uses, tracebacks included,
comes out masked.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

UNMASKED_ENV = "SMSMESH_LOG_UNMASKED"

# A number stands alone: no word character or '.' digit run glued to either side, so
# ids like 01hx4915112345678zz and decimals like 1714564800.123 are not numbers.
_NUMBER = re.compile(
    r"(?<![\w.+])"
    r"(?:(?P<prefix>\+|00)(?P<intl>\d{8,15})|(?P<bare>\d{11,15}))"
    r"(?![\w]|\.\d)"
)


def unmasked() -> bool:
    """Whether SMSMESH_LOG_UNMASKED asks for numbers and texts in clear."""
    return os.environ.get(UNMASKED_ENV, "").strip().lower() in ("1", "true", "yes")


def _country_code_length(digits: str) -> int:
    """How many leading digits are an ITU country calling code (0 when none is)."""
    for length in (1, 2, 3):
        if int(digits[:length]) in COUNTRY_CODE_TO_REGION_CODE:
            return length
    return 0


def mask_digits(digits: str) -> str:
    """`4915112345678` -> `49*********78`: country code and last two digits stay."""
    keep = _country_code_length(digits)
    hidden = len(digits) - keep - 2
    if hidden <= 0:
        return digits
    return digits[:keep] + "*" * hidden + digits[-2:]


def _replace(match: re.Match[str]) -> str:
    if match.group("bare") is not None:
        return mask_digits(match.group("bare"))
    return match.group("prefix") + mask_digits(match.group("intl"))


def mask_phone_numbers(text: str) -> str:
    """`text` with every E.164-looking number masked (see the module docstring)."""
    return _NUMBER.sub(_replace, text)


class MessageText:
    """A message text as a log argument: its length unless logging is unmasked.

    log.debug("submitting %s to %s", message_text(m.text), m.destination)
    """

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text

    def __str__(self) -> str:
        if unmasked():
            return self._text
        return f"<text: {len(self._text)} chars>"

    __repr__ = __str__


def message_text(text: str) -> MessageText:
    return MessageText(text)


class MaskingFormatter(logging.Formatter):
    """Formats with another formatter, then masks the whole result (tracebacks too)."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        return text if unmasked() else mask_phone_numbers(text)


def install(handlers: Iterable[logging.Handler] | None = None) -> None:
    """Mask what `handlers` (default: the root logger's) write; calling it twice is harmless."""
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        current = handler.formatter
        if isinstance(current, MaskingFormatter):
            continue
        handler.setFormatter(MaskingFormatter(current))
