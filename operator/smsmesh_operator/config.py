"""The operator's settings: environment variables (what the Helm chart sets) and flags.

    SMSMESH_WATCH_NAMESPACE            namespaces to serve, comma-separated; unset: the
                                       operator's own (POD_NAMESPACE); "": all namespaces
    POD_NAMESPACE                      the operator's own namespace (downward API)
    SMSMESH_STORE_URL                  store to read connection states and queue depths from
    SMSMESH_CONNECTOR_IMAGE            image of the connector pods (entrypoint `smsmesh`)
    SMSMESH_CONNECTOR_SERVICE_ACCOUNT  their ServiceAccount (default smsmesh-connector)
    SMSMESH_STORE_SECRET               Secret (in each served namespace) holding the store
                                       URL the connectors get as SMSMESH_STORE_URL
    SMSMESH_STORE_SECRET_KEY           its key (default url)
    SMSMESH_CONNECTOR_METRICS_PORT     the connectors' /metrics, /healthz, /readyz port (9464)
    SMSMESH_METRICS_TOKEN_SECRET       Secret whose key (SMSMESH_METRICS_TOKEN_SECRET_KEY,
                                       default token) opens the connectors' /metrics

Flags given after `smsmesh operator` override them; see `main.build_parser`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_IMAGE = "ghcr.io/smsmesh/smsmesh:latest"
DEFAULT_SERVICE_ACCOUNT = "smsmesh-connector"
DEFAULT_STORE_SECRET_KEY = "url"
DEFAULT_LIVENESS = "http://0.0.0.0:8081/healthz"


class ConfigError(ValueError):
    """A setting the operator cannot start with."""


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    namespaces: tuple[str, ...]  # empty: every namespace (cluster-wide)
    home_namespace: str  # where the heartbeat ConfigMap lives
    store_url: str | None = None
    connector_image: str = DEFAULT_IMAGE
    connector_service_account: str = DEFAULT_SERVICE_ACCOUNT
    store_secret: str | None = None
    store_secret_key: str = DEFAULT_STORE_SECRET_KEY
    connector_metrics_port: int = 9464
    metrics_token_secret: str | None = None
    metrics_token_secret_key: str = "token"
    liveness_endpoint: str | None = DEFAULT_LIVENESS
    status_interval: float = 10.0  # how often statuses are refreshed from the store
    heartbeat_interval: float = 10.0
    stale_after: float = 15.0  # a connector silent for this long is not bound
    watch_server_timeout: float = 300.0  # every watch is re-established at least this often
    request_timeout: float = 30.0

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @property
    def heartbeat_stale_after(self) -> float:
        """Liveness fails when no heartbeat came back through the watch for this long."""
        return 3 * self.heartbeat_interval

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: object) -> OperatorConfig:
        """Settings from the environment; keyword arguments (flags) win when not None."""
        own = environ.get("POD_NAMESPACE", "").strip() or "default"
        watch = environ.get("SMSMESH_WATCH_NAMESPACE")
        if watch is None:
            namespaces: tuple[str, ...] = (own,)
        else:
            namespaces = tuple(sorted({n.strip() for n in watch.split(",") if n.strip()}))
        values: dict[str, object] = {
            "namespaces": namespaces,
            "store_url": environ.get("SMSMESH_STORE_URL") or None,
            "connector_image": environ.get("SMSMESH_CONNECTOR_IMAGE") or DEFAULT_IMAGE,
            "connector_service_account": environ.get("SMSMESH_CONNECTOR_SERVICE_ACCOUNT")
            or DEFAULT_SERVICE_ACCOUNT,
            "store_secret": environ.get("SMSMESH_STORE_SECRET") or None,
            "store_secret_key": environ.get("SMSMESH_STORE_SECRET_KEY") or DEFAULT_STORE_SECRET_KEY,
            "connector_metrics_port": _port(environ.get("SMSMESH_CONNECTOR_METRICS_PORT")),
            "metrics_token_secret": environ.get("SMSMESH_METRICS_TOKEN_SECRET") or None,
            "metrics_token_secret_key": environ.get("SMSMESH_METRICS_TOKEN_SECRET_KEY") or "token",
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        served = values["namespaces"]
        assert isinstance(served, tuple)
        # The heartbeat must live where the watches look: the own namespace if served.
        values.setdefault("home_namespace", own if (not served or own in served) else served[0])
        config = cls(**values)  # type: ignore[arg-type]
        config.check()
        return config

    def check(self) -> None:
        if not 1 <= self.connector_metrics_port <= 65535:
            raise ConfigError(
                f"connector metrics port {self.connector_metrics_port} is not 1-65535"
            )
        for name, value in (
            ("status_interval", self.status_interval),
            ("heartbeat_interval", self.heartbeat_interval),
            ("stale_after", self.stale_after),
            ("watch_server_timeout", self.watch_server_timeout),
            ("request_timeout", self.request_timeout),
        ):
            if not value > 0:
                raise ConfigError(f"{name} must be positive, not {value!r}")
        if not self.connector_image.strip():
            raise ConfigError("SMSMESH_CONNECTOR_IMAGE is empty")


def _port(raw: str | None) -> int:
    if not raw or not raw.strip():
        return 9464
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"SMSMESH_CONNECTOR_METRICS_PORT={raw!r} is not a port number") from None
