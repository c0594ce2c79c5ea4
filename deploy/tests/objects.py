"""Helpers to look into rendered manifests: pod templates of every workload kind, label selectors."""

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob")
SERVICES = ("auth", "orders", "payments", "notifications")
COLORS = ("blue", "green")


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def by_name(objects: list[dict], kind: str) -> dict[str, dict]:
    return {obj["metadata"]["name"]: obj for obj in of_kind(objects, kind)}


def pod_template(workload: dict) -> dict:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]
    return workload["spec"]["template"]


def workloads(objects: list[dict]) -> list[dict]:
    return [obj for obj in objects if obj["kind"] in WORKLOAD_KINDS]


def web_deployments(objects: list[dict]) -> list[dict]:
    """The blue and green Deployments of the four services."""
    return [
        obj
        for obj in of_kind(objects, "Deployment")
        if obj["metadata"]["labels"].get("app.kubernetes.io/component") == "api"
    ]


def container(workload: dict, name: str) -> dict:
    return next(c for c in pod_template(workload)["spec"]["containers"] if c["name"] == name)


def matches(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) or a plain Service selector against labels."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def selected_workloads(objects: list[dict], selector: dict) -> list[str]:
    """Names of the workloads whose pods a selector picks."""
    return sorted(
        w["metadata"]["name"] for w in workloads(objects) if matches(selector, pod_template(w)["metadata"]["labels"])
    )
