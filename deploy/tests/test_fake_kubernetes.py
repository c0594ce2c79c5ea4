"""The fake API server's own semantics, so that the tool's tests rest on a fake that behaves as documented."""

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from deploy.tests.fake_kubernetes import JsonPatchTestFailed, json_patch, merge_patch


def test_a_merge_patch_deletes_keys_set_to_null():
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None}}, strategic=False) == {"a": 1, "b": {"d": 3}}


def test_a_merge_patch_replaces_lists_whole():
    patched = merge_patch(
        {"containers": [{"name": "app", "image": "a"}, {"name": "x"}]},
        {"containers": [{"name": "app"}]},
        strategic=False,
    )

    assert patched == {"containers": [{"name": "app"}]}


def test_a_strategic_merge_patch_merges_named_items():
    target = {"containers": [{"name": "app", "image": "a", "ports": [8000]}, {"name": "sidecar", "image": "s"}]}

    patched = merge_patch(target, {"containers": [{"name": "app", "image": "b"}]}, strategic=True)

    assert patched == {
        "containers": [{"name": "app", "image": "b", "ports": [8000]}, {"name": "sidecar", "image": "s"}]
    }


def test_a_json_patch_applies_its_operations_in_order():
    patched = json_patch(
        {"spec": {"replicas": 1}},
        [{"op": "test", "path": "/spec/replicas", "value": 1}, {"op": "replace", "path": "/spec/replicas", "value": 3}],
    )

    assert patched == {"spec": {"replicas": 3}}


def test_a_json_patch_whose_test_fails_is_refused():
    with pytest.raises(JsonPatchTestFailed):
        json_patch({"spec": {"replicas": 1}}, [{"op": "test", "path": "/spec/replicas", "value": 2}])


def test_creating_an_existing_object_is_a_conflict(fake_kubernetes):
    api = client.CoordinationV1Api(fake_kubernetes.api_client())
    lease = client.V1Lease(
        metadata=client.V1ObjectMeta(name="bluegreen-auth"), spec=client.V1LeaseSpec(holder_identity="a")
    )
    api.create_namespaced_lease(namespace="platform", body=lease)

    with pytest.raises(ApiException) as refused:
        api.create_namespaced_lease(namespace="platform", body=lease)

    assert refused.value.status == 409


def test_every_write_gives_a_new_resource_version(fake_kubernetes):
    before = fake_kubernetes.get("services", "auth")["metadata"]["resourceVersion"]

    fake_kubernetes.touch("services", "auth", patch={"metadata": {"labels": {"x": "y"}}})

    assert int(fake_kubernetes.get("services", "auth")["metadata"]["resourceVersion"]) > int(before)


def test_a_patch_without_a_known_content_type_is_refused(fake_kubernetes):
    api = client.CoreV1Api(fake_kubernetes.api_client())

    with pytest.raises(ApiException) as refused:
        api.patch_namespaced_service(
            name="auth", namespace="platform", body={"x": 1}, _content_type="application/apply-patch+yaml"
        )

    assert refused.value.status == 415


def test_the_service_proxy_answers_503_without_available_pods(fake_kubernetes):
    assert (
        fake_kubernetes.handle("GET", "/api/v1/namespaces/platform/services/auth-preview:http/proxy/readyz", "", b"")[0]
        == 503
    )
