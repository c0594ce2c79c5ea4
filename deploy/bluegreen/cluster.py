"""The blue/green tool's reads and writes, through the official Kubernetes client, as plain dicts.

Objects are read raw (the JSON the API server sent, shaped like the manifests) so that the decisions
see exactly what the server said. Every patch names its content type: this client defaults to JSON
Patch whatever the body is. A merge patch that carries `metadata.resourceVersion` is a
compare-and-swap: the API server answers 409 Conflict when the object changed since it was read.
"""

import json
from datetime import datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

# The manager named on every write: after the tool moved a selector or an image, a later
# `kubectl apply --server-side` that would move it back reports a conflict instead of doing it.
FIELD_MANAGER = "bluegreen"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class NotFoundError(Exception):
    pass


class ConflictError(Exception):
    """The object changed (or already exists): someone else acted since we read it."""


def micro_time(moment: datetime) -> datetime:
    """A datetime the API server accepts as a MicroTime once the client serialises it.

    The client writes datetimes with `isoformat()`, which drops the fraction when it is zero, and
    the server's MicroTime parser requires one. A microsecond of difference is harmless for a lock.
    """
    return moment if moment.microsecond else moment.replace(microsecond=1)


def format_micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Cluster:
    """One namespace of one cluster, as the tool needs it."""

    def __init__(self, *, api_client: client.ApiClient, namespace: str):
        self.namespace = namespace
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.discovery = client.DiscoveryV1Api(api_client)
        self.autoscaling = client.AutoscalingV2Api(api_client)

    def _call(self, method, **kwargs) -> dict:
        try:
            response = method(namespace=self.namespace, _preload_content=False, **kwargs)
        except ApiException as error:
            if error.status == 404:
                raise NotFoundError(kwargs.get("name", "object")) from error
            if error.status == 409:
                raise ConflictError(kwargs.get("name", "object")) from error
            raise
        return json.loads(response.data or b"{}")

    # --- reads ------------------------------------------------------------------------------------
    def read_service(self, *, name: str) -> dict:
        return self._call(self.core.read_namespaced_service, name=name)

    def read_deployment(self, *, name: str) -> dict:
        return self._call(self.apps.read_namespaced_deployment, name=name)

    def read_job(self, *, name: str) -> dict:
        return self._call(self.batch.read_namespaced_job, name=name)

    def read_autoscaler(self, *, name: str) -> dict:
        return self._call(self.autoscaling.read_namespaced_horizontal_pod_autoscaler, name=name)

    def read_lease(self, *, name: str) -> dict:
        return self._call(self.coordination.read_namespaced_lease, name=name)

    def read_cronjob(self, *, name: str) -> dict:
        return self._call(self.batch.read_namespaced_cron_job, name=name)

    def read_config_map(self, *, name: str) -> dict:
        return self._call(self.core.read_namespaced_config_map, name=name)

    def read_pod_template(self, *, name: str) -> dict:
        return self._call(self.core.read_namespaced_pod_template, name=name)

    def list_pods(self, *, label_selector: str) -> list[dict]:
        return self._call(self.core.list_namespaced_pod, label_selector=label_selector).get("items") or []

    def read_pod_log(self, *, name: str, container: str, tail_lines: int = 200) -> str:
        try:
            response = self.core.read_namespaced_pod_log(
                name=name, namespace=self.namespace, container=container, tail_lines=tail_lines, _preload_content=False
            )
        except ApiException as error:
            if error.status == 404:
                raise NotFoundError(name) from error
            raise
        return response.data.decode("utf-8", "replace")

    def proxy_query(self, *, namespace: str, service: str, port: str, path: str, params: dict) -> tuple[int, str]:
        """GET a path with a query string of a Service in any namespace, through the API server's
        service proxy: (status, body). How the tool reads Prometheus without a route to it."""
        api = self.core.api_client
        request = api.param_serialize(
            "GET",
            f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}",
            query_params=list(params.items()),
            auth_settings=["BearerToken"],
        )
        # The client's public request call: any status comes back as it is, nothing is deserialized.
        response = api.call_api(*request, _request_timeout=15)
        return response.status, response.read().decode("utf-8", "replace")

    def list_endpoint_slices(self, *, service: str) -> list[dict]:
        """The EndpointSlices the control plane keeps for a Service: which pods its traffic goes to."""
        answer = self._call(
            self.discovery.list_namespaced_endpoint_slice, label_selector=f"kubernetes.io/service-name={service}"
        )
        return answer.get("items") or []

    # --- writes -----------------------------------------------------------------------------------
    def patch_service(self, *, name: str, body: dict) -> dict:
        return self._call(
            self.core.patch_namespaced_service,
            name=name,
            body=body,
            _content_type=MERGE_PATCH,
            field_manager=FIELD_MANAGER,
        )

    def patch_deployment(self, *, name: str, body: dict | list, content_type: str = MERGE_PATCH) -> dict:
        return self._call(
            self.apps.patch_namespaced_deployment,
            name=name,
            body=body,
            _content_type=content_type,
            field_manager=FIELD_MANAGER,
        )

    def patch_autoscaler(self, *, name: str, body: dict) -> dict:
        return self._call(
            self.autoscaling.patch_namespaced_horizontal_pod_autoscaler,
            name=name,
            body=body,
            _content_type=MERGE_PATCH,
            field_manager=FIELD_MANAGER,
        )

    def patch_cronjob(self, *, name: str, body: dict, content_type: str = MERGE_PATCH) -> dict:
        return self._call(
            self.batch.patch_namespaced_cron_job,
            name=name,
            body=body,
            _content_type=content_type,
            field_manager=FIELD_MANAGER,
        )

    def create_config_map(self, *, body: dict) -> dict:
        return self._call(self.core.create_namespaced_config_map, body=body, field_manager=FIELD_MANAGER)

    def create_job(self, *, body: dict) -> dict:
        return self._call(
            self.batch.create_namespaced_job, body=client.V1Job.from_dict(body), field_manager=FIELD_MANAGER
        )

    def delete_job(self, *, name: str) -> dict:
        return self._call(self.batch.delete_namespaced_job, name=name, propagation_policy="Background")

    def create_lease(self, *, name: str, holder: str, duration_seconds: int, now: datetime) -> dict:
        lease = client.V1Lease(
            metadata=client.V1ObjectMeta(name=name, labels={"app.kubernetes.io/managed-by": "bluegreen"}),
            spec=client.V1LeaseSpec(
                holder_identity=holder,
                lease_duration_seconds=duration_seconds,
                acquire_time=micro_time(now),
                renew_time=micro_time(now),
            ),
        )
        return self._call(self.coordination.create_namespaced_lease, body=lease, field_manager=FIELD_MANAGER)

    def patch_lease(self, *, name: str, body: dict) -> dict:
        return self._call(
            self.coordination.patch_namespaced_lease,
            name=name,
            body=body,
            _content_type=MERGE_PATCH,
            field_manager=FIELD_MANAGER,
        )

    def create_event(self, *, body: dict) -> dict:
        return self._call(self.core.create_namespaced_event, body=client.CoreV1Event.from_dict(body))

    def proxy_get(self, *, service: str, port: str, path: str) -> tuple[int, str]:
        """GET a path of a Service through the API server's service proxy: (status, body)."""
        try:
            response = self.core.connect_get_namespaced_service_proxy_with_path(
                name=f"{service}:{port}", namespace=self.namespace, path=path.lstrip("/"), _preload_content=False
            )
        except ApiException as error:
            return error.status, error.body or ""
        return response.status, response.data.decode("utf-8", "replace")
