"""The Prometheus and Grafana files under deploy/ are well formed and name only metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
_METRIC = re.compile(r"\bwattstream_[a-z_]+")
_SUFFIXES = ("_bucket", "_count", "_sum")


def _defined() -> set[str]:
    """Metric names given to prometheus_client in the code (counters are named with _total)."""
    names = set()
    for path in [*ROOT.glob("ingest/**/*.py"), *ROOT.glob("api/**/*.py"), *ROOT.glob("wattstream/*.py")]:
        names |= set(re.findall(r'"(wattstream_[a-z_]+)"', path.read_text(encoding="utf-8")))
    return names


def test_dashboards_use_only_defined_metrics() -> None:
    defined = _defined()
    dashboards = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
    assert len(dashboards) == 2
    for path in dashboards:
        board = json.loads(path.read_text(encoding="utf-8"))
        assert board["uid"] and board["panels"]
        for panel in board["panels"]:
            for target in panel["targets"]:
                for name in _METRIC.findall(target.get("expr", "")):
                    base = next((name.removesuffix(s) for s in _SUFFIXES if name.endswith(s)), name)
                    assert base in defined, f"{path.name}: {panel['title']}: {name} is not a metric"


def test_prometheus_config_scrapes_both_processes() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text(encoding="utf-8"))
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs == {
        "wattstream-api": ["host.docker.internal:8000"],
        "wattstream-ingest": ["host.docker.internal:9464"],
    }


def test_grafana_provisioning_names_both_datasources() -> None:
    sources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/wattstream.yml").read_text(encoding="utf-8")
    )
    uids = {d["uid"] for d in sources["datasources"]}
    for path in (ROOT / "deploy/grafana/dashboards").glob("*.json"):
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]:
            assert panel["datasource"]["uid"] in uids


def test_alert_rules_use_only_defined_metrics_and_load() -> None:
    path = ROOT / "deploy/prometheus/alerts.yml"
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == [path.name]
    rules = [r for g in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {"WattstreamPoisonRecord", "WattstreamProcessingFailing"}
    defined = _defined()
    for rule in rules:
        names = _METRIC.findall(rule["expr"])
        assert names, rule["alert"]
        assert set(names) <= defined, f"{rule['alert']}: {names} not all metrics"
