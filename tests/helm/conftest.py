"""Fixtures for the Helm chart tests: a helm binary, and the real API server of tests/k8s.

helm comes from hack/helm.sh, which builds it from the Go module proxy once and caches it under
~/.cache/smsmesh/helm/<version>. A cold build takes minutes, beyond the 120 s timeout of a test,
so it runs in `pytest_collection_finish` (outside any test) and only when tests from this
directory were selected. When helm cannot be had (SMSMESH_SKIP_HELM=1, no Go, a failed build)
every test that needs it is skipped with the reason, which is also printed before the run.

The `kube_apiserver` fixture is the one tests/k8s defines (its conftest is loaded here under
another name), so the dry runs use the same cached v1.34 apiserver + etcd on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HELM_SCRIPT = REPO / "hack" / "helm.sh"
INSTALL_TIMEOUT_S = float(os.environ.get("SMSMESH_HELM_INSTALL_TIMEOUT", "1800"))
CHECK_TIMEOUT_S = 30.0


def _load_k8s_conftest() -> object:
    """tests/k8s/conftest.py as a module of its own (its fixtures are re-exported below)."""
    k8s = HERE.parent / "k8s"
    if str(k8s) not in sys.path:
        sys.path.insert(0, str(k8s))  # it imports kube_cluster and kube_pki as top-level
    spec = importlib.util.spec_from_file_location("smsmesh_tests_k8s_conftest", k8s / "conftest.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_k8s = _load_k8s_conftest()
kube_binaries = _k8s.kube_binaries  # type: ignore[attr-defined]
kube_apiserver = _k8s.kube_apiserver  # type: ignore[attr-defined]
tool_from_script = _k8s.tool_from_script  # type: ignore[attr-defined]

_HELM = pytest.StashKey["Path | str"]()


def _locate_or_install() -> Path | str:
    """The helm binary, installing it if needed; or the reason to skip."""
    return tool_from_script(  # type: ignore[no-any-return]
        HELM_SCRIPT,
        skip_env="SMSMESH_SKIP_HELM",
        skip_reason="not installing helm",
        without_go="helm is not installed yet and Go is not installed, "
        "so hack/helm.sh cannot build it",
        timeout=INSTALL_TIMEOUT_S,
    )


def _helm(config: pytest.Config) -> Path | str:
    if _HELM not in config.stash:
        config.stash[_HELM] = _locate_or_install()
    return config.stash[_HELM]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Install helm (and build the API server) before the first test, if tests here run."""
    config = session.config
    if config.option.collectonly or not any(
        item.path.is_relative_to(HERE) for item in session.items
    ):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and os.environ.get("SMSMESH_SKIP_HELM") != "1":
        reporter.write_line("tests/helm: looking for helm via hack/helm.sh (first build: minutes)")
    found = _helm(config)
    if reporter is not None and isinstance(found, str):
        reporter.write_line(f"tests/helm will be skipped: {found}", yellow=True)
    # The dry-run tests need kube-apiserver: build it here too (if they were selected), not
    # inside a test.
    if any(
        item.path.is_relative_to(HERE) and "kube_apiserver" in getattr(item, "fixturenames", ())
        for item in session.items
    ):
        _k8s._binaries(config)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def helm(request: pytest.FixtureRequest) -> Path:
    """Path of the helm binary; skips the test when it cannot be had."""
    found = _helm(request.config)
    if isinstance(found, str):
        pytest.skip(found)
    return found
