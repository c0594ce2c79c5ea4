"""The migration Job the tool builds from a color's Deployment is as valid and as locked down as the manifests."""

import kubernetes_validate
import pytest

from deploy.bluegreen.commands import migration_job_manifest
from deploy.tests.conftest import NEW_IMAGE
from deploy.tests.objects import SERVICES, by_name
from deploy.tests.rendering import KUBERNETES_VERSIONS
from deploy.tests.test_manifests import restricted_violations


def _job(rendered: dict, service: str) -> dict:
    deployment = by_name(rendered["production"], "Deployment")[f"{service}-green"]
    return migration_job_manifest(service=service, image=NEW_IMAGE, deployment=deployment, deadline_seconds=600)


@pytest.mark.parametrize("service", SERVICES)
def test_the_migration_job_is_valid_for_the_kubernetes_version(rendered, service):
    job = {**_job(rendered, service), "metadata": {**_job(rendered, service)["metadata"], "namespace": "platform"}}

    assert kubernetes_validate.validate(job, KUBERNETES_VERSIONS[0], strict=True) == KUBERNETES_VERSIONS[0]


@pytest.mark.parametrize("service", SERVICES)
def test_the_migration_job_meets_the_restricted_profile(rendered, service):
    assert restricted_violations(_job(rendered, service)["spec"]["template"]["spec"]) == []


def test_the_migration_job_runs_migrate_with_the_new_image_and_nothing_of_a_web_pod(rendered):
    (container,) = _job(rendered, "payments")["spec"]["template"]["spec"]["containers"]

    assert (container["name"], container["image"], container["command"], sorted(container)) == (
        "migrate",
        NEW_IMAGE,
        ["python", "manage.py", "migrate", "--no-input"],
        [
            "command",
            "env",
            "envFrom",
            "image",
            "imagePullPolicy",
            "name",
            "resources",
            "securityContext",
            "volumeMounts",
        ],
    )


def test_the_migration_job_pods_are_labelled_for_the_database_policy(rendered):
    labels = _job(rendered, "auth")["spec"]["template"]["metadata"]["labels"]

    assert (labels["app.kubernetes.io/name"], labels["app.kubernetes.io/component"]) == ("auth", "migrate")
