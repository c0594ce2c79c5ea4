"""A fake Kubernetes API server over real HTTP, for the blue/green tool's tests. It is a fake, not a cluster.

The official client talks to it exactly as to an API server (URLs, verbs, content types, Status
errors). It keeps objects in memory and implements the semantics the tool relies on and that kmock
does not: resourceVersion on every write and 409 Conflict when a patch carries a stale one, 409
AlreadyExists on create, JSON merge patch (null deletes), strategic merge of lists of named items
(containers, env), JSON Patch with `test`, and the service proxy answering through the Service's
selector. Controllers are simulated crudely: a Deployment rolls out when it is read `rollout_reads`
times after a change (0 = at once) unless its name is in `stuck`; a Job ends with `job_outcome`, and
has one pod whose log is `job_log`. With `prometheus` set (a function of the PromQL query to a value
or None), Service monitoring/prometheus answers instant queries through the service proxy.
"""

import copy
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

from kubernetes import client

PLURALS = {
    "services": ("v1", "Service"),
    "events": ("v1", "Event"),
    "deployments": ("apps/v1", "Deployment"),
    "jobs": ("batch/v1", "Job"),
    "cronjobs": ("batch/v1", "CronJob"),
    "leases": ("coordination.k8s.io/v1", "Lease"),
    "endpointslices": ("discovery.k8s.io/v1", "EndpointSlice"),
    "horizontalpodautoscalers": ("autoscaling/v2", "HorizontalPodAutoscaler"),
    "podtemplates": ("v1", "PodTemplate"),
    "configmaps": ("v1", "ConfigMap"),
    "pods": ("v1", "Pod"),
}
_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/(?P<version>[^/]+))/namespaces/(?P<namespace>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+))?(?:/proxy/(?P<proxy_path>.*)|/(?P<subresource>log))?$"
)


def merge_patch(target: object, patch: object, *, strategic: bool) -> object:
    """RFC 7386 merge; with `strategic`, lists of dicts that all have a `name` merge item by item."""
    if isinstance(patch, list) and strategic and isinstance(target, list) and _named(patch) and _named(target):
        merged = copy.deepcopy(target)
        for item in patch:
            existing = next((index for index, old in enumerate(merged) if old["name"] == item["name"]), None)
            if existing is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[existing] = merge_patch(merged[existing], item, strategic=True)
        return merged
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value, strategic=strategic)
    return result


def _named(items: list) -> bool:
    return all(isinstance(item, dict) and "name" in item for item in items)


class JsonPatchTestFailed(Exception):
    pass


def json_patch(target: dict, operations: list[dict]) -> dict:
    """RFC 6902 add, replace, remove and test."""
    document = copy.deepcopy(target)
    for operation in operations:
        *parents, last = [unquote(p).replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
        node = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key = int(last) if isinstance(node, list) and last != "-" else last
        if operation["op"] == "test":
            if node[key] != operation["value"]:
                raise JsonPatchTestFailed(operation["path"])
        elif operation["op"] in {"add", "replace"}:
            if isinstance(node, list) and operation["op"] == "add":
                node.append(operation["value"]) if key == "-" else node.insert(key, operation["value"])
            else:
                node[key] = operation["value"]
        elif operation["op"] == "remove":
            del node[key]
    return document


class FakeKubernetes:
    """In-memory objects by (plural, namespace, name), served over HTTP on 127.0.0.1."""

    def __init__(self):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.requests: list[tuple[str, str, str]] = []  # (method, path, content type)
        self.patches: list[tuple[str, object]] = []  # (path, body) of every PATCH
        self.field_managers: list[tuple[str, str, str]] = []  # (method, path, fieldManager) of writes
        self.stuck: set[str] = set()
        self.rollout_reads = 0
        self.job_outcome = "succeeded"
        self.job_log = ""
        self.prometheus = None  # query -> float | None; None: no Prometheus in the cluster
        self.queries: list[str] = []
        # Called with (method, path) before a request is served: lets a test act as a concurrent client.
        self.before_request = None
        # (method, path ending) -> HTTP status the fake answers instead, as an API server refusing.
        self.refusals: dict[tuple[str, str], int] = {}
        self.errors: list[str] = []  # exceptions of the fake itself; tests expect none
        # After a Service's selector changes, this many lists of its EndpointSlices still show the old pods.
        self.endpoints_lag = 0
        self._old_selectors: dict[str, tuple[dict, int]] = {}
        self.proxy_overrides: dict[tuple[str, str], tuple[int, dict]] = {}
        self._reads_since_change: dict[str, int] = {}
        self._version = 1000
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # A short poll interval: shutdown() waits for the serving loop to look up.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    # --- life cycle -------------------------------------------------------------------------------
    def start(self) -> "FakeKubernetes":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def api_client(self) -> client.ApiClient:
        configuration = client.Configuration(host=self.url)
        return client.ApiClient(configuration)

    # --- state the tests set up and inspect ---------------------------------------------------------
    def put(self, obj: dict, *, namespace: str = "platform") -> dict:
        """Store an object as if it had been applied (status included, if given)."""
        plural = next(plural for plural, (_, kind) in PLURALS.items() if kind == obj["kind"])
        with self._lock:
            stored = copy.deepcopy(obj)
            stored["metadata"]["namespace"] = namespace
            stored["metadata"].setdefault("uid", str(uuid.uuid4()))
            stored["metadata"].setdefault("generation", 1)
            self._bump(stored)
            self.objects[(plural, namespace, obj["metadata"]["name"])] = stored
            return stored

    def get(self, plural: str, name: str, *, namespace: str = "platform") -> dict:
        with self._lock:
            return copy.deepcopy(self.objects[(plural, namespace, name)])

    def names(self, plural: str, *, namespace: str = "platform") -> list[str]:
        with self._lock:
            return sorted(name for (p, ns, name) in self.objects if p == plural and ns == namespace)

    def touch(self, plural: str, name: str, *, namespace: str = "platform", patch: dict) -> dict:
        """Change an object as another client would: merged, and with a new resourceVersion."""
        with self._lock:
            key = (plural, namespace, name)
            self.objects[key] = merge_patch(self.objects[key], patch, strategic=True)
            self._bump(self.objects[key])
            return copy.deepcopy(self.objects[key])

    def writes(self, resource: str) -> list[tuple[str, str, str]]:
        """Writes to `resource`: a plural (`jobs`) or one object (`services/orders`)."""
        return [
            request
            for request in self.requests
            if request[0] in {"POST", "PATCH", "PUT", "DELETE"}
            and (request[1].endswith(f"/{resource}") or f"/{resource}/" in request[1])
        ]

    # --- simulated controllers ----------------------------------------------------------------------
    def _bump(self, obj: dict) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)

    def _deployment_read(self, obj: dict) -> None:
        name = obj["metadata"]["name"]
        if name in self.stuck:
            return
        status = obj.get("status", {})
        replicas = obj["spec"].get("replicas", 1)
        current = (
            status.get("observedGeneration") == obj["metadata"]["generation"]
            and status.get("availableReplicas", 0) == replicas
        )
        if current:
            return
        reads = self._reads_since_change.get(name, 0)
        if reads < self.rollout_reads:
            self._reads_since_change[name] = reads + 1
            return
        obj["status"] = {
            "observedGeneration": obj["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }
        self._bump(obj)
        self._reads_since_change[name] = 0

    def _job_created(self, obj: dict) -> None:
        if self.job_outcome == "succeeded":
            obj["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        elif self.job_outcome == "failed":
            obj["status"] = {"failed": 3, "conditions": [{"type": "Failed", "status": "True"}]}
        else:
            obj["status"] = {"active": 1}

    def _endpoint_slices(self, namespace: str, service_name: str) -> dict:
        """One EndpointSlice per Service: a ready endpoint per available pod of the selected Deployments."""
        service = self.objects.get(("services", namespace, service_name))
        selector = service["spec"].get("selector", {}) if service else {}
        old_selector, lists_left = self._old_selectors.get(service_name, ({}, 0))
        if lists_left > 0:
            selector = old_selector
            self._old_selectors[service_name] = (old_selector, lists_left - 1)
        endpoints = [
            {"addresses": [f"10.0.0.{index}"], "conditions": {"ready": True},
             "targetRef": {"kind": "Pod", "name": f"{name}-5d8f7c-{index}"}}
            for (plural, ns, name), obj in sorted(self.objects.items())
            if plural == "deployments" and ns == namespace and selector
            and all(obj["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
            for index in range(obj.get("status", {}).get("availableReplicas", 0))
        ]  # fmt: skip
        items = [{"metadata": {"name": f"{service_name}-abcde"}, "endpoints": endpoints}] if service else []
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList", "metadata": {}, "items": items}

    def _prometheus(self, query: str) -> tuple[int, dict]:
        self.queries.append(query)
        value = self.prometheus(query)
        result = [] if value is None else [{"metric": {}, "value": [0, str(value)]}]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}

    def _proxy(self, namespace: str, service_port: str, path: str, query: dict) -> tuple[int, dict]:  # noqa: PLR0911
        service_name = service_port.split(":", 1)[0]
        if (namespace, service_name, path) == ("monitoring", "prometheus", "api/v1/query"):
            if self.prometheus is None:
                return 404, _status(404, "NotFound", 'services "prometheus" not found')
            return self._prometheus(query["query"][0])
        if (service_name, path) in self.proxy_overrides:
            return self.proxy_overrides[(service_name, path)]
        service = self.objects.get(("services", namespace, service_name))
        if service is None:
            return 404, _status(404, "NotFound", f'services "{service_name}" not found')
        selector = service["spec"].get("selector", {})
        pods_of = [
            obj
            for (plural, ns, _), obj in self.objects.items()
            if plural == "deployments"
            and ns == namespace
            and all(obj["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
            and obj.get("status", {}).get("availableReplicas", 0) > 0
        ]
        if not pods_of:
            return 503, _status(503, "ServiceUnavailable", f'no endpoints available for service "{service_name}"')
        deployment = pods_of[0]
        if path == "readyz":
            return 200, {"status": "ready"}
        if path == "version":
            env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
            image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            return 200, {"service": env["SERVICE"], "version": image.rsplit(":", 1)[-1], "git_sha": "0" * 7,
                         "color": env["DEPLOY_COLOR"]}  # fmt: skip
        return 404, {"detail": "not found"}

    # --- HTTP ----------------------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, content_type: str, body: bytes) -> tuple[int, dict]:  # noqa: PLR0911
        path, query = urlparse(raw_path).path, parse_qs(urlparse(raw_path).query)
        with self._lock:
            refused = self._observe(method, path, query, content_type)
            if refused is not None:
                return refused
            match = _PATH.match(path)
            if not match or match["plural"] not in PLURALS:
                return 404, _status(404, "NotFound", f"the fake serves no {path}")
            namespace, plural = match["namespace"], match["plural"]
            name = unquote(match["name"]) if match["name"] else None
            if match["proxy_path"] is not None:
                return self._proxy(namespace, name, match["proxy_path"], query)
            if plural == "pods" and method == "GET":
                return self._pods(namespace, name, query, log=match["subresource"] == "log")
            if plural == "endpointslices" and method == "GET" and name is None:
                selector = query.get("labelSelector", [""])[0]
                return 200, self._endpoint_slices(namespace, selector.removeprefix("kubernetes.io/service-name="))
            if method == "POST":
                return self._create(namespace, plural, json.loads(body))
            return self._serve_object(method, (plural, namespace, name), content_type, body)

    def _observe(self, method: str, path: str, query: dict, content_type: str) -> tuple[int, dict] | None:
        """Record the request, let the test act first, and answer with a refusal the test asked for."""
        if self.before_request is not None:
            self.before_request(method, path)
        self.requests.append((method, path, content_type))
        if method in {"POST", "PATCH", "PUT"}:
            self.field_managers.append((method, path, query.get("fieldManager", [""])[0]))
        for (refused_method, ending), status in self.refusals.items():
            if method == refused_method and path.endswith(ending):
                return status, _status(status, "Forbidden" if status == 403 else "Refused", "refused by the fake")
        return None

    def _pods(self, namespace: str, name: str | None, query: dict, *, log: bool) -> tuple[int, dict | str]:
        """A Job's one pod (`<job>-x7k2p`) and its log; no other pods exist."""
        jobs = {job for plural, ns, job in self.objects if plural == "jobs" and ns == namespace}
        if name is None:
            wanted = query.get("labelSelector", [""])[0].removeprefix("job-name=")
            items = (
                [{"metadata": {"name": f"{wanted}-x7k2p", "labels": {"job-name": wanted}}}] if wanted in jobs else []
            )
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
        if not log or name.removesuffix("-x7k2p") not in jobs:
            return 404, _status(404, "NotFound", f'pods "{name}" not found')
        return 200, self.job_log

    def _serve_object(self, method: str, key: tuple[str, str, str], content_type: str, body: bytes) -> tuple[int, dict]:
        plural, _, name = key
        if key not in self.objects:
            return 404, _status(404, "NotFound", f'{plural} "{name}" not found')
        if method == "GET":
            if plural == "deployments":
                self._deployment_read(self.objects[key])
            return 200, self.objects[key]
        if method == "PATCH":
            self.patches.append((f"{plural}/{name}", json.loads(body)))
            return self._patch(key, content_type, json.loads(body))
        if method == "DELETE":
            del self.objects[key]
            return 200, _status(200, "", "deleted", status="Success")
        return 405, _status(405, "MethodNotAllowed", method)

    def _create(self, namespace: str, plural: str, obj: dict) -> tuple[int, dict]:
        # Like the API server, take the kind from the URL when the body leaves it out.
        obj.setdefault("apiVersion", PLURALS[plural][0])
        obj.setdefault("kind", PLURALS[plural][1])
        key = (plural, namespace, obj["metadata"]["name"])
        if key in self.objects:
            return 409, _status(409, "AlreadyExists", f'{plural} "{key[2]}" already exists')
        stored = self.put(obj, namespace=namespace)
        if plural == "jobs":
            self._job_created(stored)
        return 201, stored

    def _patch(self, key: tuple[str, str, str], content_type: str, patch: object) -> tuple[int, dict]:
        if key not in self.objects:
            return 404, _status(404, "NotFound", f'{key[0]} "{key[2]}" not found')
        current = self.objects[key]
        if content_type == "application/json-patch+json":
            try:
                updated = json_patch(current, patch)
            except JsonPatchTestFailed as failed:
                return 422, _status(422, "Invalid", f"the test operation on {failed} failed")
        elif content_type in {"application/merge-patch+json", "application/strategic-merge-patch+json"}:
            if not isinstance(patch, dict):
                return 400, _status(400, "BadRequest", "a merge patch must be a JSON object")
            expected = patch.get("metadata", {}).get("resourceVersion")
            if expected is not None and expected != current["metadata"]["resourceVersion"]:
                return 409, _status(
                    409, "Conflict", "the object has been modified; please apply your changes to the latest version"
                )
            updated = merge_patch(current, patch, strategic=content_type.startswith("application/strategic"))
        else:
            return 415, _status(415, "UnsupportedMediaType", f"the fake does not take {content_type}")
        if updated.get("spec") != current.get("spec"):
            updated["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        if key[0] == "services" and updated["spec"].get("selector") != current["spec"].get("selector"):
            self._old_selectors[key[2]] = (current["spec"].get("selector", {}), self.endpoints_lag)
        self._bump(updated)
        self.objects[key] = updated
        return 200, updated

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                content_type = (self.headers.get("Content-Type") or "").split(";")[0]
                try:
                    status, payload = fake.handle(self.command, self.path, content_type, body)
                except Exception as error:  # a bug of the fake: make it loud in the test
                    fake.errors.append(repr(error))
                    status, payload = 500, _status(500, "InternalError", repr(error))
                raw = isinstance(payload, str)  # a pod's log is text
                data = payload.encode() if raw else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if raw else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
                pass

        return Handler


def _status(code: int, reason: str, message: str, *, status: str = "Failure") -> dict:
    return {"apiVersion": "v1", "kind": "Status", "status": status, "reason": reason, "message": message, "code": code}
