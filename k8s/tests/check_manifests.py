#!/usr/bin/env python3
"""Offline checks of the rendered Kustomize overlays (run by .ci/k8s-validate).

    check_manifests.py schema  --kubernetes-version 1.32.0 RENDERED.yaml
    check_manifests.py invariants --overlay dev|prod RENDERED.yaml
    check_manifests.py self-test --kubernetes-version 1.32.0 RENDERED-dev.yaml RENDERED-prod.yaml

`schema` validates every object against the Kubernetes JSON schemas bundled in the PyPI
package kubernetes-validate (strict: unknown fields are errors). Custom resources have no schema
there; only the kinds listed in CRD_KINDS are skipped, anything else without a schema fails.

`invariants` checks what the schema cannot: probes, resources, security context, grace period
against the configured drain, NetworkPolicies, the gateway's LoadBalancer, replicas, HPAs and
PodDisruptionBudgets in prod.

`self-test` proves the invariant checks can fail: it breaks the rendered objects one way at a
time (a probe removed, a limit removed, ...) and expects each break to be reported.

Every failure is printed as one line; the exit code is 1 if there is any.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tomllib
from typing import Any, Callable

import yaml

# Custom resources: kubernetes-validate has no schema for them (they come from the operators'
# CRDs), so they are skipped by name, and only these.
CRD_KINDS = {
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"),
}

PARTS = ["gateway", "scheduling", "expertise", "wound", "signalling"]
COMPONENT = "app.kubernetes.io/component"
BINARY = "/usr/local/bin/telehealth"

Doc = dict[str, Any]


def load(path: str) -> list[Doc]:
    with open(path, encoding="utf-8") as file:
        return [doc for doc in yaml.safe_load_all(file) if doc]


def name_of(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# --- schema -----------------------------------------------------------------------------------


def schema_errors(docs: list[Doc], version: str) -> tuple[list[str], list[str]]:
    """Errors, and the objects skipped as custom resources."""
    import kubernetes_validate

    errors, skipped = [], []
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CRD_KINDS:
            skipped.append(name_of(doc))
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.path)
            errors.append(f"{name_of(doc)}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(
                f"{name_of(doc)}: no schema for {key[0]} {key[1]} in Kubernetes {version} "
                "(a custom resource must be added to CRD_KINDS explicitly)"
            )
    return errors, skipped


# --- invariants -------------------------------------------------------------------------------


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc.get("kind") == kind]


def selects(selector: Doc | None, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector matches `labels` (an empty selector matches everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def is_default_deny(policy: Doc) -> bool:
    spec = policy.get("spec", {})
    return (
        spec.get("podSelector") in ({}, None)
        and {"Ingress", "Egress"} <= set(spec.get("policyTypes") or [])
        and not spec.get("ingress")
        and not spec.get("egress")
    )


def settings_env(docs: list[Doc]) -> dict[str, str]:
    """The TELEHEALTH_* variables of the `telehealth-settings` ConfigMap."""
    for config_map in by_kind(docs, "ConfigMap"):
        if config_map["metadata"]["name"].startswith("telehealth-settings"):
            return dict(config_map.get("data") or {})
    return {}


def drain_seconds(docs: list[Doc], container: Doc) -> int | None:
    """shutdown.drain_seconds as the part sees it: env wins over the TOML file; default 10."""
    env = settings_env(docs)
    env.update({e["name"]: e.get("value") for e in container.get("env") or [] if "value" in e})
    if "TELEHEALTH_SHUTDOWN__DRAIN_SECONDS" in env:
        return int(env["TELEHEALTH_SHUTDOWN__DRAIN_SECONDS"])
    for config_map in by_kind(docs, "ConfigMap"):
        if config_map["metadata"]["name"].startswith("telehealth-config"):
            config = tomllib.loads(config_map["data"]["telehealth.toml"])
            return int(config.get("shutdown", {}).get("drain_seconds", 10))
    return None


def container_errors(docs: list[Doc], deployment: Doc, part: str) -> list[str]:
    errors = []
    where = f"Deployment/{deployment['metadata']['name']}"
    pod = deployment["spec"]["template"]["spec"]
    pod_security = pod.get("securityContext") or {}
    containers = pod.get("containers") or []
    if not containers:
        return [f"{where}: no container"]
    config_maps = {c["metadata"]["name"] for c in by_kind(docs, "ConfigMap")}
    referred = [v["configMap"]["name"] for v in pod.get("volumes") or [] if "configMap" in v]
    for container in containers:
        referred += [e["configMapRef"]["name"] for e in container.get("envFrom") or [] if "configMapRef" in e]
    for name in referred:
        # ConfigMaps are all ours and rendered (generated names carry a hash): a reference that
        # kustomize did not rewrite points at nothing.
        if name not in config_maps:
            errors.append(f"{where}: refers to ConfigMap {name}, which is not rendered")
    for container in containers:
        at = f"{where} container {container.get('name')}"
        if container.get("args") != ["serve", part]:
            errors.append(f"{at}: args must be [serve, {part}], got {container.get('args')}")
        for probe in ("livenessProbe", "readinessProbe"):
            command = ((container.get(probe) or {}).get("exec") or {}).get("command") or []
            if command[:3] != [BINARY, "health", part]:
                errors.append(f"{at}: {probe} must exec `{BINARY} health {part}`, got {command}")
        resources = container.get("resources") or {}
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(bound) or {}):
                    errors.append(f"{at}: no {resource} in resources.{bound}")
        security = container.get("securityContext") or {}
        if security.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{at}: allowPrivilegeEscalation must be false")
        if security.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{at}: readOnlyRootFilesystem must be true")
        if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
            errors.append(f"{at}: capabilities must drop ALL")
        if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
            errors.append(f"{at}: runAsNonRoot must be true")
        seccomp = security.get("seccompProfile") or pod_security.get("seccompProfile") or {}
        if seccomp.get("type") != "RuntimeDefault":
            errors.append(f"{at}: seccompProfile must be RuntimeDefault")
        drain = drain_seconds(docs, container)
        pause = (((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get(
            "seconds", 0
        )
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if drain is None:
            errors.append(f"{at}: no telehealth-config ConfigMap to read shutdown.drain_seconds")
        elif grace <= drain + pause:
            errors.append(
                f"{at}: terminationGracePeriodSeconds {grace} must exceed the preStop pause "
                f"({pause} s) + shutdown.drain_seconds ({drain} s)"
            )
    return errors


def invariant_errors(docs: list[Doc], overlay: str) -> list[str]:
    errors = []
    deployments = by_kind(docs, "Deployment")
    policies = by_kind(docs, "NetworkPolicy")
    if not any(is_default_deny(policy) for policy in policies):
        errors.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    found = {d["metadata"]["name"] for d in deployments}
    for part in PARTS:
        if part not in found:
            errors.append(f"Deployment/{part}: missing")
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
        part = labels.get(COMPONENT, name)
        errors += container_errors(docs, deployment, part)
        ingress_policies = [
            p["metadata"]["name"]
            for p in policies
            if not is_default_deny(p)
            and "Ingress" in (p["spec"].get("policyTypes") or [])
            and p["spec"].get("ingress")
            and selects(p["spec"].get("podSelector"), labels)
        ]
        if not ingress_policies:
            errors.append(f"Deployment/{name}: no NetworkPolicy allows ingress to its pods")
        replicas = deployment["spec"].get("replicas")
        if overlay == "dev" and replicas != 1:
            errors.append(f"Deployment/{name}: dev runs one replica, got {replicas}")
        if overlay == "prod":
            errors += prod_errors(docs, deployment, labels, replicas)
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    gateway = services.get("gateway")
    if not gateway or gateway["spec"].get("type") != "LoadBalancer":
        errors.append("Service/gateway: must be of type LoadBalancer")
    for part in PARTS[1:]:
        service = services.get(part)
        if not service or service["spec"].get("type", "ClusterIP") != "ClusterIP":
            errors.append(f"Service/{part}: must exist and be ClusterIP (reachable in-cluster only)")
    return errors


def prod_errors(docs: list[Doc], deployment: Doc, labels: dict[str, str], replicas) -> list[str]:
    name = deployment["metadata"]["name"]
    errors = []
    if replicas is not None and replicas < 2:
        errors.append(f"Deployment/{name}: prod needs at least 2 replicas, got {replicas}")
    hpas = [
        h
        for h in by_kind(docs, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
        and h["spec"]["scaleTargetRef"].get("name") == name
    ]
    if not hpas:
        errors.append(f"Deployment/{name}: no HorizontalPodAutoscaler")
    for hpa in hpas:
        if hpa["spec"].get("minReplicas", 1) < 2:
            errors.append(f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: minReplicas < 2")
    if not any(selects(p["spec"].get("selector"), labels) for p in by_kind(docs, "PodDisruptionBudget")):
        errors.append(f"Deployment/{name}: no PodDisruptionBudget selects its pods")
    spread = deployment["spec"]["template"]["spec"].get("topologySpreadConstraints") or []
    if not spread:
        errors.append(f"Deployment/{name}: no topologySpreadConstraints")
    return errors


# --- self-test --------------------------------------------------------------------------------


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    for doc in docs:
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise KeyError(f"{kind}/{name} not rendered")


def container(docs: list[Doc], name: str) -> Doc:
    return find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def remove(docs: list[Doc], kind: str, name: str) -> None:
    docs.remove(find(docs, kind, name))


# (overlay, what is broken, how, what the report must say)
MUTATIONS: list[tuple[str, str, Callable[[list[Doc]], None], str]] = [
    ("prod", "liveness probe removed", lambda d: container(d, "scheduling").pop("livenessProbe"),
     "Deployment/scheduling container scheduling: livenessProbe"),
    ("dev", "readiness probe of another part", lambda d: container(d, "wound")["readinessProbe"]["exec"].update(
        command=[BINARY, "health", "expertise"]), "Deployment/wound container wound: readinessProbe"),
    ("prod", "memory limit removed", lambda d: container(d, "gateway")["resources"]["limits"].pop("memory"),
     "Deployment/gateway container gateway: no memory in resources.limits"),
    ("dev", "cpu request removed", lambda d: container(d, "expertise")["resources"]["requests"].pop("cpu"),
     "no cpu in resources.requests"),
    ("prod", "writable root filesystem", lambda d: container(d, "wound")["securityContext"].update(
        readOnlyRootFilesystem=False), "readOnlyRootFilesystem must be true"),
    ("prod", "capabilities kept", lambda d: container(d, "signalling")["securityContext"].pop("capabilities"),
     "capabilities must drop ALL"),
    ("prod", "privilege escalation", lambda d: container(d, "gateway")["securityContext"].update(
        allowPrivilegeEscalation=True), "allowPrivilegeEscalation must be false"),
    ("prod", "seccomp unconfined", lambda d: [
        find(d, "Deployment", "scheduling")["spec"]["template"]["spec"]["securityContext"].update(
            seccompProfile={"type": "Unconfined"}),
        container(d, "scheduling")["securityContext"].update(seccompProfile={"type": "Unconfined"})],
     "seccompProfile must be RuntimeDefault"),
    ("prod", "grace period shorter than the drain", lambda d: find(d, "Deployment", "expertise")["spec"]["template"][
        "spec"].update(terminationGracePeriodSeconds=20), "terminationGracePeriodSeconds 20 must exceed"),
    ("dev", "drain raised by env above the grace period", lambda d: container(d, "signalling")["env"].append(
        {"name": "TELEHEALTH_SHUTDOWN__DRAIN_SECONDS", "value": "60"}), "shutdown.drain_seconds (60 s)"),
    ("prod", "default-deny policy removed", lambda d: remove(d, "NetworkPolicy", "default-deny"),
     "no default-deny NetworkPolicy"),
    ("prod", "wound's ingress policy removed", lambda d: remove(d, "NetworkPolicy", "wound"),
     "Deployment/wound: no NetworkPolicy allows ingress"),
    ("dev", "gateway behind a ClusterIP", lambda d: find(d, "Service", "gateway")["spec"].update(type="ClusterIP"),
     "Service/gateway: must be of type LoadBalancer"),
    ("prod", "a part's PDB removed", lambda d: remove(d, "PodDisruptionBudget", "signalling"),
     "Deployment/signalling: no PodDisruptionBudget"),
    ("prod", "HPA with one replica", lambda d: find(d, "HorizontalPodAutoscaler", "wound")["spec"].update(
        minReplicas=1), "HorizontalPodAutoscaler/wound: minReplicas < 2"),
    ("prod", "HPA removed", lambda d: remove(d, "HorizontalPodAutoscaler", "gateway"),
     "Deployment/gateway: no HorizontalPodAutoscaler"),
    ("prod", "one replica pinned", lambda d: find(d, "Deployment", "scheduling")["spec"].update(replicas=1),
     "Deployment/scheduling: prod needs at least 2 replicas"),
    ("prod", "no topology spread", lambda d: find(d, "Deployment", "wound")["spec"]["template"]["spec"].pop(
        "topologySpreadConstraints"), "Deployment/wound: no topologySpreadConstraints"),
    ("prod", "reference to a ConfigMap not rendered", lambda d: container(d, "signalling")["envFrom"][0][
        "configMapRef"].update(name="telehealth-settings"), "Deployment/signalling: refers to ConfigMap telehealth-settings,"),
    ("dev", "a part missing", lambda d: remove(d, "Deployment", "expertise"), "Deployment/expertise: missing"),
]


# (what is broken, how, what the schema check must say); run on the prod overlay.
SCHEMA_MUTATIONS: list[tuple[str, Callable[[list[Doc]], None], str]] = [
    ("misspelt field", lambda d: container(d, "wound").update(readinesProbe={}),
     "Deployment/wound: spec/template/spec/containers/0"),
    ("wrong type", lambda d: find(d, "Deployment", "gateway")["spec"]["template"]["spec"].update(
        terminationGracePeriodSeconds="thirty"), "Deployment/gateway: spec/template/spec/terminationGracePeriodSeconds"),
    ("unknown custom resource", lambda d: d.append(
        {"apiVersion": "example.org/v1", "kind": "Widget", "metadata": {"name": "w"}}),
     "Widget/w: no schema"),
]


def self_test(rendered: dict[str, list[Doc]], version: str) -> list[str]:
    failures = []
    for what, mutate, expected in SCHEMA_MUTATIONS:
        docs = copy.deepcopy(rendered["prod"])
        mutate(docs)
        errors, _ = schema_errors(docs, version)
        if not any(expected in error for error in errors):
            failures.append(f"self-test: schema, {what}: expected `{expected}`, reported {errors}")
    for overlay, docs in rendered.items():
        errors = invariant_errors(docs, overlay)
        if errors:
            failures.append(f"self-test: the {overlay} overlay as rendered must pass, got: {errors}")
    for overlay, what, mutate, expected in MUTATIONS:
        docs = copy.deepcopy(rendered[overlay])
        mutate(docs)
        errors = invariant_errors(docs, overlay)
        if not any(expected in error for error in errors):
            failures.append(f"self-test: {overlay}, {what}: expected `{expected}`, reported {errors}")
    if not failures:
        count = len(MUTATIONS) + len(SCHEMA_MUTATIONS)
        print(f"self-test: {count} broken manifests, each reported")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    schema = sub.add_parser("schema")
    schema.add_argument("--kubernetes-version", required=True)
    schema.add_argument("rendered")
    invariants = sub.add_parser("invariants")
    invariants.add_argument("--overlay", choices=["dev", "prod"], required=True)
    invariants.add_argument("rendered")
    test = sub.add_parser("self-test")
    test.add_argument("--kubernetes-version", required=True)
    test.add_argument("dev")
    test.add_argument("prod")
    args = parser.parse_args()

    if args.command == "schema":
        docs = load(args.rendered)
        errors, skipped = schema_errors(docs, args.kubernetes_version)
        checked = len(docs) - len(skipped)
        print(
            f"{args.rendered}: {checked} objects valid against Kubernetes {args.kubernetes_version}"
            if not errors
            else f"{args.rendered}: {len(errors)} schema errors"
        )
        print(f"  skipped (custom resources, no schema): {', '.join(sorted(skipped)) or 'none'}")
    elif args.command == "invariants":
        errors = invariant_errors(load(args.rendered), args.overlay)
        if not errors:
            print(f"{args.rendered}: invariants of the {args.overlay} overlay hold")
    else:
        errors = self_test({"dev": load(args.dev), "prod": load(args.prod)}, args.kubernetes_version)
    for error in errors:
        print(f"FAIL {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
