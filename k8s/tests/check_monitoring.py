#!/usr/bin/env python3
"""Checks k8s/monitoring (run by .ci/run): the alert rules and their unit tests pass promtool,
and every query of the Grafana dashboard is valid PromQL (each is checked by promtool as a
recording rule) over metrics the suite exports (the names listed in docs/operations.md).

    check_monitoring.py PROMTOOL
"""

import json
import pathlib
import re
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent.parent / "monitoring"
DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "operations.md"
OURS = re.compile(r"\b((?:gateway|rpc_server|tls|expertise|signalling|scheduling|images)_[a-z_]+)\b")


def main() -> int:
    promtool = sys.argv[1]
    errors = []
    for command in (["check", "rules", "alerts.rules.yaml"], ["test", "rules", "alerts.test.yaml"]):
        done = subprocess.run([promtool, *command], cwd=HERE, capture_output=True, text=True)
        print(done.stdout.strip())
        if done.returncode != 0:
            errors.append(f"promtool {' '.join(command)}: {done.stderr.strip() or done.stdout.strip()}")
    dashboard = json.loads((HERE / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    if not exprs:
        errors.append("the dashboard has no query")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{n}", "expr": expr} for n, expr in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        json.dump(rules, file)  # JSON is YAML
        file.flush()
        done = subprocess.run([promtool, "check", "rules", file.name], capture_output=True, text=True)
        if done.returncode != 0:
            errors.append(f"dashboard queries: {done.stderr.strip() or done.stdout.strip()}")
        else:
            print(f"dashboard: {len(exprs)} queries are valid PromQL")
    documented = set(OURS.findall(DOCS.read_text(encoding="utf-8")))
    used = set(OURS.findall(" ".join(exprs) + (HERE / "alerts.rules.yaml").read_text(encoding="utf-8")))
    # Histograms and counters are documented by their base name.
    base = lambda name: re.sub(r"_(bucket|sum|count)$", "", name)
    for name in sorted(used):
        if base(name) not in documented and name not in documented:
            errors.append(f"{name}: used by the dashboard or the alerts, not in docs/operations.md's metrics")
    for error in errors:
        print(error)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
