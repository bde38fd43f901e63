"""Simulator settings: validation, the SmscSimulator resource, command-line overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from smsmesh.cli import build_parser
from smsmesh.simulator import SettingsError, SimulatorSettings, load_settings
from smsmesh.simulator.server import settings_from_args

SIMULATOR = """\
apiVersion: smsmesh.io/v1alpha1
kind: SmscSimulator
metadata:
  name: {name}
spec:
  host: 127.0.0.2
  port: 2800
  {creds}
  receiptDelaySeconds: 0.5
  receiptOutcome: mixed
  throttleTps: 40
  errorRate: 0.1
  moIntervalSeconds: 30
"""

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: sim-creds
stringData:
  systemId: acme
  password: s3cret
"""

CREDS = "credentialsSecretRef: {name: sim-creds}"


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)


def test_defaults_are_valid_and_the_password_is_not_in_repr() -> None:
    settings = SimulatorSettings(system_id="acme", password="hunter2")
    assert (settings.port, settings.receipt_delay, settings.window) == (2775, 1.0, 10)
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"port": 70000}, "port"),
        ({"receipt_delay": -1}, "receipt_delay"),
        ({"receipt_delay": float("nan")}, "receipt_delay"),
        ({"receipt_outcome": "lost"}, "receipt_outcome"),
        ({"throttle_tps": 0}, "throttle_tps"),
        ({"error_rate": 1.5}, "error_rate"),
        ({"mo_interval": 0}, "mo_interval"),
        ({"id_style": "octal"}, "id_style"),
        ({"receipt_mode": "smoke"}, "receipt_mode"),
        ({"window": 0}, "window"),
        ({"password": "longer-than-8"}, "password"),
        ({"system_id": "x" * 16}, "system_id"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(changes: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        SimulatorSettings(**changes)  # type: ignore[arg-type]


def test_with_changes_refuses_unknown_names() -> None:
    with pytest.raises(SettingsError, match="unknown simulator setting"):
        SimulatorSettings().with_changes(colour="blue")


def test_load_settings_reads_the_resource_and_its_secret(tmp_path: Path) -> None:
    write(tmp_path, "sim.yaml", SIMULATOR.format(name="sim", creds=CREDS))
    write(tmp_path, "secret.yaml", SECRET)
    settings = load_settings(tmp_path, "sim")
    assert settings.host == "127.0.0.2"
    assert settings.port == 2800
    assert (settings.system_id, settings.password) == ("acme", "s3cret")
    assert settings.receipt_delay == 0.5
    assert settings.receipt_outcome == "mixed"
    assert settings.throttle_tps == 40
    assert settings.error_rate == 0.1
    assert settings.mo_interval == 30


def test_load_settings_without_credentials_accepts_any_bind(tmp_path: Path) -> None:
    write(tmp_path, "sim.yaml", SIMULATOR.format(name="open", creds=""))
    settings = load_settings(tmp_path)  # the only simulator: no name needed
    assert settings.system_id is None
    assert settings.password is None


def test_load_settings_names_what_is_missing(tmp_path: Path) -> None:
    write(tmp_path, "sim.yaml", SIMULATOR.format(name="sim", creds=CREDS))
    with pytest.raises(SettingsError, match=r"no SmscSimulator named 'other'.*found: sim"):
        load_settings(tmp_path, "other")
    with pytest.raises(SettingsError, match="sim-creds") as info:
        load_settings(tmp_path, "sim")  # the Secret is not in the folder
    assert "s3cret" not in str(info.value)


def test_load_settings_needs_a_name_when_there_are_several(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sims.yaml",
        SIMULATOR.format(name="a", creds="") + "---\n" + SIMULATOR.format(name="b", creds=""),
    )
    with pytest.raises(SettingsError, match=r"2 SmscSimulator resources \(a, b\)"):
        load_settings(tmp_path)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["simulate", *argv])


def test_cli_flags_override_the_resource(tmp_path: Path) -> None:
    write(tmp_path, "sim.yaml", SIMULATOR.format(name="sim", creds=CREDS))
    write(tmp_path, "secret.yaml", SECRET)
    settings = settings_from_args(
        parse(
            "--resources",
            str(tmp_path),
            "--name",
            "sim",
            "--port",
            "0",
            "--password",
            "other",
            "--receipt-outcome",
            "expired",
            "--error-rate",
            "0",
        )
    )
    assert settings.port == 0
    assert (settings.system_id, settings.password) == ("acme", "other")
    assert settings.receipt_outcome == "expired"
    assert settings.error_rate == 0
    assert settings.throttle_tps == 40  # not overridden


def test_cli_without_resources_uses_defaults_and_flags() -> None:
    settings = settings_from_args(parse("--receipt-delay", "0", "--throttle-tps", "5"))
    assert (settings.receipt_delay, settings.throttle_tps) == (0, 5)
    assert settings.system_id is None


def test_cli_errors_exit_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="receipt_outcome must be one of"):
        settings_from_args(parse("--receipt-outcome", "sometimes"))
    with pytest.raises(SystemExit, match="--name needs --resources"):
        settings_from_args(parse("--name", "sim"))
    with pytest.raises(SystemExit, match="no SmscSimulator"):
        settings_from_args(parse("--resources", str(tmp_path), "--name", "sim"))
