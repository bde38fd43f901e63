"""The Grafana dashboards and the alert rules ask only for metrics smsmesh really exports.

Every PromQL expression in helm/smsmesh/dashboards/*.json (panel targets and template
variable queries) and in helm/smsmesh/alerts/smsmesh-rules.yaml is taken apart into the
metric names and label names it uses. Then a real router and a real connector process
carry messages to the simulator, and their /metrics (behind the metrics token) are
scraped: each name must be exported there, each label must be one of that metric's
labels, and every metric that ordinary traffic moves must have samples, so a panel
never sits empty because of a typo or a renamed metric.

The dashboards and rules are also checked for shape (unique ids, a grid that fits,
variables that exist, alert severities and annotations), and with promtool when it is
installed (`promtool check rules` plus the unit tests in alerts_test.yaml).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from smsmesh.telemetry import metrics
from tests.e2e.conftest import GatewayFactory
from tests.e2e.harness import WebhookReceiver

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "smsmesh"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
RULES = CHART / "alerts" / "smsmesh-rules.yaml"
RULE_TESTS = Path(__file__).with_name("alerts_test.yaml")
TOKEN = "dashboards-scrape-token"

# Labels Prometheus itself attaches to scraped series (target labels), and `le` of buckets.
TARGET_LABELS = frozenset(
    {"namespace", "pod", "job", "instance", "service", "container", "endpoint", "le"}
)
# Metrics that only move when something goes wrong (or for MO traffic): exported but
# without samples after a clean run, so only their presence is checked.
EVENT_ONLY = frozenset(
    {
        "smsmesh_connection_submits_unanswered_total",
        "smsmesh_connection_reconnects_total",
        "smsmesh_connection_bind_failures_total",
        "smsmesh_connection_throttled_total",
        "smsmesh_connection_throttle_episodes_total",
        "smsmesh_receipts_unmatched_total",
        "smsmesh_receipts_malformed_total",
        "smsmesh_inbound_messages_total",
        "smsmesh_route_failovers_total",
        "smsmesh_application_rejected_total",
        "smsmesh_webhook_failures_total",
        "smsmesh_webhook_retries_total",
        "smsmesh_webhook_given_up_total",
        "smsmesh_messages_expired_total",
    }
)

# -- taking PromQL apart -------------------------------------------------------------------

KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
     "unless", "offset", "inf", "nan", "atan2"}
)  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_RANGE = re.compile(r"\[[^\]]*\]")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", re.IGNORECASE
)
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")
_NUMBER = re.compile(r"\b\d[\d.]*(?:e[+-]?\d+)?(?:ms|s|m|h|d|w|y)?\b")  # 0.5, 1h, 1e3


@dataclass
class Uses:
    """What one PromQL expression asks for."""

    metrics: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)  # labels matched or grouped by


def parse_promql(expr: str) -> Uses:
    """Metric and label names in `expr` (enough PromQL for our expressions; see tests)."""
    uses = Uses()
    text = _RANGE.sub(" ", expr)  # [5m], [$__rate_interval], subqueries' [1h:1m]
    for matchers in _MATCHERS.findall(_STRING.sub('""', text)):
        uses.labels.update(
            m.group(0) for m in re.finditer(r"[A-Za-z_]\w*(?=\s*(=~|!~|!=|=))", matchers)
        )
    text = _MATCHERS.sub(" ", _STRING.sub(" ", text))
    for found in _GROUPING.finditer(text):
        uses.labels.update(n.strip() for n in found.group(2).split(",") if n.strip())
    text = _NUMBER.sub(" ", _GROUPING.sub(" ", text))
    for found in _IDENT.finditer(text):
        name = found.group(0)
        rest = text[found.end() :].lstrip()
        if rest.startswith("("):  # a function call
            continue
        if name.lower() in KEYWORDS or name.startswith("$") or _DURATION.match(name):
            continue
        if text[max(0, found.start() - 1) : found.start()] == "$":  # a Grafana variable
            continue
        uses.metrics.add(name)
    return uses


def test_the_promql_reader_finds_metrics_and_labels() -> None:
    uses = parse_promql(
        'histogram_quantile(0.99, sum by (connection, le) (rate(a_bucket{state="x", '
        'connection=~"$connection"}[$__rate_interval]))) / on(job) group_left '
        'max without (pod) (b_total offset 1h) > bool 0.5 and c unless d{e!="}"}'
    )
    assert uses.metrics == {"a_bucket", "b_total", "c", "d"}
    assert uses.labels == {"connection", "le", "state", "job", "pod", "e"}


# -- the expressions -----------------------------------------------------------------------


def dashboard_exprs(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every target and every query variable of a dashboard."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for panel in panels(board["panels"]):
        for target in panel.get("targets", []):
            yield f"{board['uid']} / {panel['title']} / {target['refId']}", target["expr"]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            found = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["definition"])
            assert found, f"{board['uid']}: variable {var['name']}: {var['definition']}"
            yield f"{board['uid']} / variable {var['name']}", f"{found[1]}{{{found[2]}!=''}}"


def rule_exprs() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"{group['name']} / {rule['alert']}", rule["expr"]


def all_exprs() -> list[tuple[str, str]]:
    out = list(rule_exprs())
    for path in DASHBOARDS:
        out.extend(dashboard_exprs(json.loads(path.read_text())))
    return out


# -- metric definitions (what a family is called in each form) -----------------------------


def exposition_names() -> dict[str, tuple[str, frozenset[str]]]:
    """Sample name -> (family name, label names) for every metric smsmesh defines."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for metric in metrics.ALL:
        family = metric._name
        labels = frozenset(metric._labelnames)
        kind = metric._type
        if kind == "counter":
            out[f"{family}_total"] = (family, labels)
        elif kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                out[family + suffix] = (family, labels)
        else:
            out[family] = (family, labels)
    return out


def test_every_referenced_metric_and_label_is_defined() -> None:
    """The fast half: against the definitions in smsmesh/telemetry/metrics.py."""
    defined = exposition_names()
    exprs = all_exprs()
    assert len(exprs) > 40
    problems = []
    for where, expr in exprs:
        uses = parse_promql(expr)
        assert uses.metrics, f"{where}: no metric in {expr!r}"
        for name in uses.metrics:
            if name not in defined:
                problems.append(f"{where}: {name} is not a metric smsmesh exports")
                continue
        # A label may belong to any metric of the expression (joins, ratios).
        allowed = TARGET_LABELS.union(*(defined[n][1] for n in uses.metrics if n in defined))
        problems.extend(
            f"{where}: no metric in it has a label {x!r}" for x in uses.labels - allowed
        )
    assert problems == []


def test_the_dashboards_cover_every_metric_family() -> None:
    """A metric nobody charts is a metric nobody reads: each family is on some dashboard."""
    referenced = set()
    for path in DASHBOARDS:
        for _, expr in dashboard_exprs(json.loads(path.read_text())):
            referenced |= parse_promql(expr).metrics
    families = {exposition_names()[n][0] for n in referenced if n in exposition_names()}
    missing = {m._name for m in metrics.ALL} - families - {"smsmesh_build_info"}
    assert missing == set()


# -- shape -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_shape(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"] == f"smsmesh-{path.stem}"
    assert board["title"].startswith("smsmesh / ")
    assert "smsmesh" in board["tags"]
    names = {v["name"] for v in board["templating"]["list"]}
    assert "datasource" in names
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] < pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for var in re.findall(r"\$(\w+)", target["expr"]):
                assert var.startswith("__") or var in names, f"{panel['title']}: ${var}"
    # No two panels overlap on the grid.
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area


def test_alert_rules_shape() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [rule for group in groups for rule in group["rules"]]
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names))
    # The four the issue asks for, at least.
    assert {
        "SmsmeshBindDown",
        "SmsmeshQueueGrowing",
        "SmsmeshReceiptSuccessDropping",
        "SmsmeshWebhookFailures",
    } <= set(names)
    for rule in alerts:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]


# -- live: a running router and connector export all of it -----------------------------------


async def scrape(url: str) -> dict[str, dict[str, Any]]:
    """Family name -> {"type", "samples": [(name, labels)]} from one /metrics."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as response,
    ):
        assert response.status == 200, await response.text()
        text = await response.text()
    return {
        f.name: {"type": f.type, "samples": [(s.name, s.labels) for s in f.samples]}
        for f in text_string_to_metric_families(text)
    }


async def test_a_running_router_and_connector_export_every_referenced_metric(
    make_gateway: GatewayFactory, hooks: WebhookReceiver
) -> None:
    gateway = await make_gateway(env={"SMSMESH_METRICS_TOKEN": TOKEN}, tps=50.0)
    ids = []
    for i in range(5):
        status, body = await gateway.send({"to": f"+4915100000{i:03d}", "text": f"m{i}"})
        assert status == 202, body
        ids.append(body["id"])
    await hooks.wait_for(lambda calls: set(ids) <= {c.body.get("id") for c in calls})

    router = await scrape(gateway.url)
    connector = await scrape(f"http://127.0.0.1:{gateway.metrics_port}")
    exported: dict[str, set[str]] = {}  # sample name -> label names seen with samples
    present: set[str] = set()  # sample names whose family is listed (samples or not)
    for scraped in (router, connector):
        for family, data in scraped.items():
            kind = data["type"]
            suffixes = {
                "counter": ["_total"],
                "histogram": ["_bucket", "_sum", "_count"],
            }.get(kind, [""])
            present.update(family + s for s in suffixes)
            for name, labels in data["samples"]:
                exported.setdefault(name, set()).update(labels)

    referenced: set[str] = set()
    problems = []
    for where, expr in all_exprs():
        for name in parse_promql(expr).metrics:
            referenced.add(name)
            if name not in present:
                problems.append(f"{where}: {name} is not on any /metrics")
    assert problems == []
    # What ordinary traffic moves has samples, with the labels the expressions group by.
    silent = sorted(n for n in referenced - EVENT_ONLY if n not in exported)
    assert silent == []
    for name in referenced - EVENT_ONLY:
        defined_labels = exposition_names()[name][1]
        assert defined_labels <= exported[name] | {"le"}, name


# -- promtool, when installed ----------------------------------------------------------------


def find_promtool() -> str | None:
    """$SMSMESH_PROMTOOL, promtool on PATH, or the one hack/promtool.sh built."""
    explicit = os.environ.get("SMSMESH_PROMTOOL")
    if explicit:
        return explicit
    if shutil.which("promtool"):
        return shutil.which("promtool")
    found = subprocess.run(
        [str(REPO / "hack" / "promtool.sh"), "--check"], capture_output=True, text=True, timeout=30
    )
    return found.stdout.strip() if found.returncode == 0 else None


PROMTOOL = find_promtool()
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (hack/promtool.sh builds it)"
)
# Grafana's variables, replaced by what Grafana would put there.
GRAFANA_VARIABLES = {
    "$__rate_interval": "2m",
    "$__range": "6h",
    "$connection": "sim|other",
    "$route": "default",
}


@needs_promtool
def test_promtool_checks_and_unit_tests_the_rules(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    check = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tests = tmp_path / "alerts_test.yaml"
    tests.write_text(RULE_TESTS.read_text().replace("RULES_FILE", str(RULES)))
    run = subprocess.run(
        [PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr


@needs_promtool
def test_promtool_parses_every_dashboard_expression() -> None:
    assert PROMTOOL is not None
    for path in DASHBOARDS:
        for where, expr in dashboard_exprs(json.loads(path.read_text())):
            query = expr
            for variable, value in GRAFANA_VARIABLES.items():
                query = query.replace(variable, value)
            assert "$" not in query, f"{where}: unknown Grafana variable in {expr!r}"
            done = subprocess.run(
                [PROMTOOL, "--experimental", "promql", "format", query],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, f"{where}: {done.stdout}{done.stderr}"


# -- the chart renders them ------------------------------------------------------------------


def find_helm() -> str | None:
    found = subprocess.run(
        [str(REPO / "hack" / "helm.sh"), "--check"], capture_output=True, text=True, timeout=30
    )
    return found.stdout.strip() if found.returncode == 0 else None


HELM = find_helm()


def render(tmp_path: Path, metrics_values: dict[str, Any]) -> list[dict[str, Any]]:
    assert HELM is not None
    values = tmp_path / "values.json"
    values.write_text(
        json.dumps({"store": {"existingSecret": "smsmesh-store"}, "metrics": metrics_values})
    )
    done = subprocess.run(
        [HELM, "template", "smsmesh", str(CHART), "--namespace", "sms", "-f", str(values)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.mark.skipif(HELM is None, reason="helm not installed (hack/helm.sh builds it)")
def test_the_chart_renders_dashboards_and_rules_only_when_asked(tmp_path: Path) -> None:
    kinds = {d["kind"] for d in render(tmp_path, {})}
    assert "PrometheusRule" not in kinds
    docs = render(
        tmp_path,
        {
            "dashboards": {
                "enabled": True,
                "annotations": {"grafana_folder": "smsmesh"},
                "namespace": "monitoring",
            },
            "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
        },
    )
    boards = {
        d["metadata"]["name"]: d
        for d in docs
        if d["kind"] == "ConfigMap" and "-dashboard-" in d["metadata"]["name"]
    }
    assert sorted(boards) == [f"smsmesh-dashboard-{p.stem}" for p in DASHBOARDS]
    for path in DASHBOARDS:
        cm = boards[f"smsmesh-dashboard-{path.stem}"]
        assert cm["metadata"]["namespace"] == "monitoring"
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "smsmesh"}
        assert json.loads(cm["data"][f"smsmesh-{path.stem}.json"]) == json.loads(path.read_text())
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["metadata"]["namespace"] == "sms"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())  # {{ $labels }} left as they are
