"""How `running_apiserver` fails: fast, with the dying process's own words, and tidily."""

from __future__ import annotations

import shlex
import socket
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from kube_cluster import ClusterStartError, running_apiserver

pytestmark = pytest.mark.k8s


def fake_apiserver(bin_dir: Path, real_bin_dir: Path, args_file: Path) -> None:
    """A bin dir with the real etcd and a kube-apiserver that records its flags and dies."""
    bin_dir.mkdir()
    (bin_dir / "etcd").symlink_to(real_bin_dir / "etcd")
    script = bin_dir / "kube-apiserver"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {shlex.quote(str(args_file))}\n'
        'echo "Error: unknown flag: --pretend-misconfiguration" >&2\n'
        "exit 1\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_apiserver_exiting_at_start_fails_with_its_log_and_stops_etcd(
    kube_binaries: Path, tmp_path: Path
) -> None:
    args_file = tmp_path / "apiserver-args"
    fake_apiserver(tmp_path / "bin", kube_binaries, args_file)

    with (
        pytest.raises(ClusterStartError, match="unknown flag: --pretend-misconfiguration"),
        running_apiserver(tmp_path / "bin", tmp_path / "work"),
    ):
        pytest.fail("yielded although kube-apiserver exited")

    flags = args_file.read_text().splitlines()
    assert "--bind-address=127.0.0.1" in flags
    etcd_url = next(f.split("=", 1)[1] for f in flags if f.startswith("--etcd-servers="))
    etcd = urlsplit(etcd_url)
    assert etcd.hostname == "127.0.0.1"
    # etcd was up (the apiserver is only started once etcd answers /health) and is stopped now.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((etcd.hostname, etcd.port or 0), timeout=5).close()
