"""Run a real etcd + kube-apiserver pair on 127.0.0.1 for the duration of a test session.

No kubelet, scheduler or controller-manager: just the API, which is what operator and CRD
tests need (validation, defaulting, server-side apply, RBAC, watches). Every process listens
on 127.0.0.1 only, on ports picked free at start, with state in a throwaway directory; every
wait is bounded and a process that dies early fails the start with the tail of its log.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kube_pki import ADMIN_USER, UNPRIVILEGED_USER, Pki, generate_pki

from smsmesh.local import free_port

LOOPBACK = "127.0.0.1"
ETCD_READY_TIMEOUT_S = 30.0
APISERVER_READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.2
START_ATTEMPTS = 3  # a free port can be taken by someone else between probing and binding


class ClusterStartError(RuntimeError):
    """etcd or kube-apiserver did not become ready; the message carries its log tail."""


@dataclass(frozen=True)
class KubeApiserver:
    """A running test API server and the credentials to talk to it.

    `admin_token` and the `admin_cert`/`admin_key` pair both authenticate as `admin_user` in
    group system:masters; `user_token` is `unprivileged_user`, bound to no RBAC role at all.
    """

    server: str
    ca_path: Path
    admin_token: str
    admin_cert: Path
    admin_key: Path
    user_token: str
    etcd_url: str
    bin_dir: Path
    log_dir: Path
    admin_user: str = ADMIN_USER
    unprivileged_user: str = UNPRIVILEGED_USER

    @property
    def kubectl(self) -> Path:
        """The kubectl built alongside the server (same version)."""
        return self.bin_dir / "kubectl"

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context trusting only the test CA (verifies 127.0.0.1 in the SAN)."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def auth_headers(self, token: str | None = None) -> dict[str, str]:
        """Bearer header for `token`, the admin token by default."""
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def write_kubeconfig(
        self, path: Path, *, namespace: str = "default", client_cert: bool = False
    ) -> Path:
        """Write a kubeconfig for the admin (token, or client certificate if asked); return path.

        JSON is valid kubeconfig (YAML is a superset), so no YAML writer is needed.
        """
        user: dict[str, str]
        if client_cert:
            user = {"client-certificate": str(self.admin_cert), "client-key": str(self.admin_key)}
        else:
            user = {"token": self.admin_token}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "smsmesh-test",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_path)},
                }
            ],
            "users": [{"name": self.admin_user, "user": user}],
            "contexts": [
                {
                    "name": "smsmesh-test",
                    "context": {
                        "cluster": "smsmesh-test",
                        "user": self.admin_user,
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "smsmesh-test",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path


def _log_tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_S."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


class _ExitedEarly(ClusterStartError):
    def __init__(self, name: str, log: Path) -> None:
        self.port_clash = "address already in use" in _log_tail(log, 200)
        super().__init__(f"{name} exited during start-up; last log lines:\n{_log_tail(log)}")


def _wait_ready(
    name: str, proc: subprocess.Popen[bytes], log: Path, probe: Callable[[], bool], timeout: float
) -> None:
    """Poll `probe` until it returns True, the process exits, or `timeout` seconds pass.

    A process start-up offers no event to await, so this polls; the pause between probes is a
    bounded wait on the process itself, which also notices an early exit at once.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        try:
            proc.wait(timeout=POLL_INTERVAL_S)
        except subprocess.TimeoutExpired:
            continue
        raise _ExitedEarly(name, log)
    raise ClusterStartError(
        f"{name} not ready after {timeout:.0f} s; last log lines:\n{_log_tail(log)}"
    )


def _http_ok(url: str, *, context: ssl.SSLContext | None = None, token: str = "") -> bool:
    """True when GET url answers 200; connection errors and other statuses are False."""
    # An empty ProxyHandler: never send loopback traffic to an HTTP(S)_PROXY from the env.
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.build_opener(*handlers).open(request, timeout=2.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _etcd_argv(bin_dir: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client = f"http://{LOOPBACK}:{client_port}"
    peer = f"http://{LOOPBACK}:{peer_port}"
    return [
        str(bin_dir / "etcd"),
        "--name=smsmesh-test",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=smsmesh-test={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync",  # a throwaway data dir: durability buys nothing, fsync costs time
        "--log-level=warn",
    ]


def _apiserver_argv(bin_dir: Path, pki: Pki, etcd_url: str, port: int) -> list[str]:
    return [
        str(bin_dir / "kube-apiserver"),
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={port}",
        f"--etcd-servers={etcd_url}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--token-auth-file={pki.token_file}",
        "--authorization-mode=RBAC",
        f"--service-account-issuer=https://{LOOPBACK}:{port}",
        f"--service-account-key-file={pki.sa_public_key}",
        f"--service-account-signing-key-file={pki.sa_private_key}",
        # A configuration value only: no kube-proxy, so no traffic ever goes there.
        "--service-cluster-ip-range=10.0.0.0/24",
        # No controller-manager creates the `default` ServiceAccount, so this admission plugin
        # would reject every Pod; and 127.0.0.1 may not be published as the endpoint of the
        # `kubernetes` Service (loopback endpoints are invalid), so skip that reconciler.
        "--disable-admission-plugins=ServiceAccount",
        "--endpoint-reconciler-type=none",
        "--profiling=false",
    ]


@dataclass(frozen=True)
class _Launch:
    """One start attempt: the command, how to tell it is ready, and what to yield then."""

    argv: list[str]
    probe: Callable[[], bool]
    result: str


@contextlib.contextmanager
def _serving(
    name: str, log: Path, timeout: float, launch: Callable[[int], _Launch]
) -> Iterator[str]:
    """Run the process `launch(attempt)` describes until the with-block ends.

    A port probed free can be taken before the process binds it; that one failure is retried
    with fresh ports (launch is called again), a bounded number of times.
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        plan = launch(attempt)
        proc = _start(plan.argv, log)
        try:
            try:
                _wait_ready(name, proc, log, plan.probe, timeout)
            except _ExitedEarly as exc:
                if exc.port_clash and attempt < START_ATTEMPTS:
                    continue
                raise
            yield plan.result
            return
        finally:
            _stop(proc)


@contextlib.contextmanager
def running_apiserver(bin_dir: Path, workdir: Path) -> Iterator[KubeApiserver]:
    """Start etcd and kube-apiserver from `bin_dir`, state and logs under `workdir`.

    Yields once /readyz answers 200; stops both processes (terminate, then kill) on exit.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    pki = generate_pki(workdir / "pki")
    context = ssl.create_default_context(cafile=str(pki.ca_cert))

    def etcd(attempt: int) -> _Launch:
        client_port, peer_port = free_port(), free_port()
        url = f"http://{LOOPBACK}:{client_port}"
        data_dir = workdir / f"etcd-data-{attempt}"
        return _Launch(
            argv=_etcd_argv(bin_dir, data_dir, client_port, peer_port),
            probe=lambda: _http_ok(f"{url}/health"),
            result=url,
        )

    def apiserver(etcd_url: str) -> Callable[[int], _Launch]:
        def launch(attempt: int) -> _Launch:
            port = free_port()
            server = f"https://{LOOPBACK}:{port}"
            return _Launch(
                argv=_apiserver_argv(bin_dir, pki, etcd_url, port),
                probe=lambda: _http_ok(f"{server}/readyz", context=context, token=pki.admin_token),
                result=server,
            )

        return launch

    with (
        _serving("etcd", workdir / "etcd.log", ETCD_READY_TIMEOUT_S, etcd) as etcd_url,
        _serving(
            "kube-apiserver",
            workdir / "kube-apiserver.log",
            APISERVER_READY_TIMEOUT_S,
            apiserver(etcd_url),
        ) as server,
    ):
        yield KubeApiserver(
            server=server,
            ca_path=pki.ca_cert,
            admin_token=pki.admin_token,
            admin_cert=pki.admin_cert,
            admin_key=pki.admin_key,
            user_token=pki.user_token,
            etcd_url=etcd_url,
            bin_dir=bin_dir,
            log_dir=workdir,
        )
