"""What the SMSC simulator does, as one validated value, and where that value comes from.

The same settings drive `smsmesh simulate` (from an SmscSimulator resource, overridden by
command-line flags) and the in-process `Simulator` of tests and benchmarks, so a test
exercises exactly what local mode runs.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = [
    "BEHAVIOUR_FIELDS",
    "ID_STYLES",
    "RECEIPT_MODES",
    "RECEIPT_OUTCOMES",
    "SettingsError",
    "SimulatorSettings",
    "load_settings",
    "settings_from_args",
]

RECEIPT_OUTCOMES = ("delivered", "undeliverable", "expired", "rejected", "mixed")
# decimal: ids are decimal everywhere; hex: hex everywhere; hex-receipt: decimal in
# submit_sm_resp but the receipt quotes the same number in hex, as some carriers do.
ID_STYLES = ("decimal", "hex", "hex-receipt")
# Where a receipt states its id and outcome: TLVs, the text, or both.
RECEIPT_MODES = ("both", "tlv", "text")

# What `Simulator.set_behaviour` may change while sessions are bound.
BEHAVIOUR_FIELDS = frozenset(
    (
        "receipt_delay",
        "receipt_outcome",
        "receipts_enabled",
        "throttle_tps",
        "error_rate",
        "id_style",
        "receipt_mode",
    )
)


class SettingsError(ValueError):
    """The simulator cannot run with these settings; the message says which and why."""


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """Everything the simulator does. Validated on construction (SettingsError).

    system_id/password None accept any bind; a set system_id refuses others with
    ESME_RINVSYSID, a set password refuses others with ESME_RINVPASWD.
    """

    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str | None = None
    password: str | None = field(default=None, repr=False)
    receipt_delay: float = 1.0
    receipt_outcome: str = "delivered"
    receipts_enabled: bool = True
    throttle_tps: float | None = None
    error_rate: float = 0.0
    mo_interval: float | None = None
    id_style: str = "decimal"
    receipt_mode: str = "both"
    window: int = 10
    seed: int | None = None
    # Less often changed: how receipts are retried and how much is kept.
    deliver_timeout: float = 10.0  # seconds to wait for a deliver_sm_resp
    receipt_attempts: int = 5  # deliver_sm attempts per receipt before giving up
    retry_delay: float = 1.0  # before the first retry; doubles per attempt
    max_queued_receipts: int = 100_000  # per system_id, waiting for a receiver
    max_scheduled_receipts: int = 1_000_000  # waiting for their delay, all accounts
    keep_received: int = 100_000  # submits remembered in Simulator.received
    first_message_id: int | None = None  # None: derived from the clock, unique per run
    enquire_link_interval: float | None = 30.0
    system_name: str = "smsmesh-sim"  # our system_id in bind responses

    def __post_init__(self) -> None:
        problems: list[str] = []

        def check(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        def number(value: object) -> bool:
            return (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            )

        check(isinstance(self.host, str) and bool(self.host), "host must be a non-empty string")
        check(
            isinstance(self.port, int) and 0 <= self.port <= 65535,
            f"port must be 0..65535, got {self.port!r}",
        )
        check(
            number(self.receipt_delay) and 0 <= self.receipt_delay <= 86400,
            f"receipt_delay must be 0..86400 seconds, got {self.receipt_delay!r}",
        )
        check(
            self.receipt_outcome in RECEIPT_OUTCOMES,
            f"receipt_outcome must be one of {', '.join(RECEIPT_OUTCOMES)}, "
            f"got {self.receipt_outcome!r}",
        )
        check(
            self.throttle_tps is None or (number(self.throttle_tps) and self.throttle_tps > 0),
            f"throttle_tps must be a positive number or unset, got {self.throttle_tps!r}",
        )
        check(
            number(self.error_rate) and 0 <= self.error_rate <= 1,
            f"error_rate must be 0..1, got {self.error_rate!r}",
        )
        check(
            self.mo_interval is None or (number(self.mo_interval) and self.mo_interval > 0),
            f"mo_interval must be a positive number of seconds or unset, got {self.mo_interval!r}",
        )
        check(
            self.id_style in ID_STYLES,
            f"id_style must be one of {', '.join(ID_STYLES)}, got {self.id_style!r}",
        )
        check(
            self.receipt_mode in RECEIPT_MODES,
            f"receipt_mode must be one of {', '.join(RECEIPT_MODES)}, got {self.receipt_mode!r}",
        )
        for name in ("window", "receipt_attempts", "max_queued_receipts", "keep_received"):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= 1, f"{name} must be at least 1")
        check(
            isinstance(self.max_scheduled_receipts, int) and self.max_scheduled_receipts >= 1,
            "max_scheduled_receipts must be at least 1",
        )
        for name in ("deliver_timeout", "retry_delay"):
            value = getattr(self, name)
            check(number(value) and value > 0, f"{name} must be a positive number of seconds")
        check(
            self.first_message_id is None
            or (isinstance(self.first_message_id, int) and self.first_message_id >= 0),
            "first_message_id must be a non-negative integer or unset",
        )
        check(
            self.enquire_link_interval is None
            or (number(self.enquire_link_interval) and self.enquire_link_interval > 0),
            "enquire_link_interval must be positive or unset",
        )
        for name in ("system_id", "password"):
            value = getattr(self, name)
            # SMPP 3.4: system_id is at most 15 octets, password at most 8 (plus NUL).
            limit = 16 if name == "system_id" else 9
            check(
                value is None or (isinstance(value, str) and len(value) < limit),
                f"{name} must be a string of at most {limit - 1} characters or unset",
            )
        if problems:
            raise SettingsError("; ".join(problems))

    def with_changes(self, **changes: Any) -> SimulatorSettings:
        """A validated copy with `changes` applied (unknown names are a SettingsError)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise SettingsError(f"unknown simulator setting(s): {', '.join(unknown)}")
        return replace(self, **changes)


def load_settings(folder: Path | str, name: str | None = None) -> SimulatorSettings:
    """Settings from the SmscSimulator `name` in a folder of resource YAML.

    `name` may be omitted when the folder holds exactly one simulator. Credentials come
    from the referenced Secret (or its environment override). Raises SettingsError.
    """
    from smsmesh.resources import ResourceError, load_folder

    try:
        resources = load_folder(folder)
    except (ResourceError, OSError) as exc:
        raise SettingsError(f"cannot read resources from {folder}: {exc}") from exc
    found = sorted(resources.simulators)
    if name is None:
        if len(found) != 1:
            raise SettingsError(
                f"{folder} holds {len(found)} SmscSimulator resources "
                f"({', '.join(found) or 'none'}): name the one to run"
            )
        name = found[0]
    simulator = resources.simulators.get(name)
    if simulator is None:
        raise SettingsError(
            f"no SmscSimulator named {name!r} in {folder} (found: {', '.join(found) or 'none'})"
        )
    spec = simulator.spec
    system_id = password = None
    creds = spec.credentials_secret_ref
    if creds is not None:
        try:
            system_id = resources.secret_value(creds.system_id_ref())
            password = resources.secret_value(creds.password_ref())
        except ResourceError as exc:
            raise SettingsError(f"SmscSimulator {name!r}: {exc}") from exc
    return SimulatorSettings(
        host=spec.host,
        port=spec.port,
        system_id=system_id,
        password=password,
        receipt_delay=float(spec.receipt_delay_seconds),
        receipt_outcome=str(spec.receipt_outcome.value),
        throttle_tps=spec.throttle_tps,
        error_rate=float(spec.error_rate),
        mo_interval=spec.mo_interval_seconds,
    )


# Command-line flag (argparse dest) -> settings field. A flag left at None was not given.
_FLAG_FIELDS = {
    "host": "host",
    "port": "port",
    "system_id": "system_id",
    "password": "password",
    "receipt_delay": "receipt_delay",
    "receipt_outcome": "receipt_outcome",
    "throttle_tps": "throttle_tps",
    "error_rate": "error_rate",
    "mo_interval": "mo_interval",
    "id_style": "id_style",
    "receipt_mode": "receipt_mode",
    "window": "window",
    "seed": "seed",
}


def settings_from_args(args: argparse.Namespace) -> SimulatorSettings:
    """Settings for `smsmesh simulate`: the named SmscSimulator from `--resources` (if
    given), then every flag that was given on top. Bad settings exit with the reason,
    as argparse does for bad flags."""
    try:
        folder = getattr(args, "resources", None)
        name = getattr(args, "name", None)
        if folder:
            base = load_settings(folder, name)
        elif name:
            raise SettingsError("--name needs --resources (the folder holding it)")
        else:
            base = SimulatorSettings()
        overrides = {
            attr: value
            for flag, attr in _FLAG_FIELDS.items()
            if (value := getattr(args, flag, None)) is not None
        }
        return base.with_changes(**overrides)
    except SettingsError as exc:
        raise SystemExit(f"smsmesh simulate: {exc}") from None
