"""The `kube_apiserver` session fixture: a real kube-apiserver + etcd on 127.0.0.1.

The binaries come from hack/build-kube.sh, which builds them from Go modules once and caches
them under ~/.cache/smsmesh/kube/<version>. A cold build takes minutes (about five on two
cores), beyond the 120 s pytest-timeout of a test, so the build runs in
`pytest_collection_finish` (outside any test) and only when tests from this directory were
selected. When the binaries cannot be had
(SMSMESH_SKIP_KUBE=1, no Go, a failed build), every test here is skipped with the exact reason,
which is also printed before the tests run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_cluster import KubeApiserver, running_apiserver

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE.parents[1] / "hack" / "build-kube.sh"
BUILD_TIMEOUT_S = float(os.environ.get("SMSMESH_KUBE_BUILD_TIMEOUT", "3600"))
CHECK_TIMEOUT_S = 30.0

# The bin directory holding kube-apiserver/etcd/kubectl, or why there is none.
_BINARIES = pytest.StashKey["Path | str"]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "k8s: needs a real kube-apiserver and etcd (built by hack/build-kube.sh)"
    )


def last_lines(text: str, count: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-count:])


def run_script(script: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a hack/ build script; on timeout kill its whole process group (go and its
    compilers)."""
    proc = subprocess.Popen(
        [str(script), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=CHECK_TIMEOUT_S)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def tool_from_script(
    script: Path, *, skip_env: str, skip_reason: str, without_go: str, timeout: float
) -> Path | str:
    """What a hack/ build script prints last (a binary or bin directory), building it if
    `--check` finds nothing cached; or a one-paragraph reason to skip. tests/helm uses it
    for hack/helm.sh too."""
    if os.environ.get(skip_env) == "1":
        return f"{skip_env}=1 is set: {skip_reason}"
    check = run_script(script, "--check", timeout=CHECK_TIMEOUT_S)
    if check.returncode == 0:
        return Path(check.stdout.strip())
    if shutil.which("go") is None:
        return without_go
    name = script.relative_to(HERE.parents[1])
    try:
        build = run_script(script, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"{name} did not finish within {timeout:.0f} s"
    if build.returncode != 0:
        return f"{name} failed (exit {build.returncode}):\n{last_lines(build.stderr)}"
    return Path(build.stdout.strip().splitlines()[-1])


def _locate_or_build() -> Path | str:
    """The bin directory, building it if needed; or a one-paragraph reason to skip."""
    return tool_from_script(
        BUILD_SCRIPT,
        skip_env="SMSMESH_SKIP_KUBE",
        skip_reason="not building or starting kube-apiserver/etcd",
        without_go="kube-apiserver/etcd are not built yet and Go is not installed, "
        f"so {BUILD_SCRIPT.relative_to(HERE.parents[1])} cannot build them",
        timeout=BUILD_TIMEOUT_S,
    )


def _binaries(config: pytest.Config) -> Path | str:
    if _BINARIES not in config.stash:
        config.stash[_BINARIES] = _locate_or_build()
    return config.stash[_BINARIES]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build (or find) the binaries before the first test, if any test here was selected."""
    config = session.config
    if config.option.collectonly or not any(
        item.path.is_relative_to(HERE) for item in session.items
    ):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and os.environ.get("SMSMESH_SKIP_KUBE") != "1":
        reporter.write_line(
            "tests/k8s: looking for kube-apiserver/etcd via hack/build-kube.sh "
            "(the first build takes minutes; later runs reuse ~/.cache)"
        )
    found = _binaries(config)
    if reporter is not None and isinstance(found, str):
        reporter.write_line(f"tests/k8s will be skipped: {found}", yellow=True)


@pytest.fixture(scope="session")
def kube_binaries(request: pytest.FixtureRequest) -> Path:
    """Directory holding kube-apiserver, etcd and kubectl; skips when they cannot be built."""
    found = _binaries(request.config)
    if isinstance(found, str):
        pytest.skip(found)
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line tool is not installed (it makes the test PKI)")
    return found


@pytest.fixture(scope="session")
def kube_apiserver(
    kube_binaries: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeApiserver]:
    """A running kube-apiserver (RBAC on, admin token/cert) backed by a fresh etcd.

    Shared by the whole session: tests must use their own namespaces and object names.
    """
    with running_apiserver(kube_binaries, tmp_path_factory.mktemp("kube")) as api:
        yield api
