"""The backup CronJobs (deploy/base/backup) against the real cluster, and their backups restored.

After a journey has put rows in every database, one Job of each CronJob runs now, as
`kubectl create job --from=cronjob/NAME` makes it. Each service's dump is then restored, inside the
cluster and by restore.sh in the same image, into a fresh database owned by the service's role, with
the identity handed to the restore pod for that moment only; every table's row count must equal the
live database's at the backup. The Secrets' archive is decrypted here, where the identity lives, and
must hold every Secret of the namespace, key by key, auth's signing key among them.
"""

from __future__ import annotations

import base64
import os
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from kubernetes import client

from tests.cluster.kube import KIND_CLUSTER, NAMESPACE, REPO, SERVICES, STATE_DIR, wait_until
from tests.cluster.test_alerts import LAST_SUCCESS
from tests.cluster.test_platform import prometheus_query
from tests.journey import journey_run

SECRETS_DIR = REPO / "deploy" / "overlays" / "kind" / "secrets"
# On kind, the folder of this machine that every node mounts for the provisioner's volumes
# (deploy/overlays/kind/cluster.yaml).
KIND_VOLUMES = Path(os.environ.get("CLUSTER_TEST_KIND_VOLUMES", "/var/lib/platform-kind/volumes"))
DATABASE_POD = "postgresql-0"
SECRETS_BACKUP = "platform-secrets-backup"
# Every Secret the platform needs to start again in the local cluster (the kind overlay's).
SECRETS = (*(f"{service}-secrets" for service in SERVICES), "auth-signing-key", "postgresql")


def psql(cluster, database: str, sql: str) -> str:
    """A query as the database's superuser, over the database pod's local socket; its rows, unaligned."""
    command = ["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", database, "-At", "-c", sql]
    return cluster.exec(DATABASE_POD, command, container="postgresql")


def row_counts(cluster, database: str) -> dict[str, int]:
    tables = psql(cluster, database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").split()
    assert tables, f"no tables in {database}"
    # The table names come from the catalogue of the platform's own database.
    union = " UNION ALL ".join(f"SELECT '{table}', count(*) FROM public.\"{table}\"" for table in tables)  # noqa: S608
    return {
        table: int(count) for table, count in (line.split("|") for line in psql(cluster, database, union).splitlines())
    }


def job_from_cronjob(cluster, cronjob: str, name: str) -> None:
    """What `kubectl create job --from=cronjob/CRONJOB NAME` creates."""
    batch = client.BatchV1Api(cluster.api)
    owner = batch.read_namespaced_cron_job(cronjob, NAMESPACE)
    template = owner.spec.job_template
    batch.create_namespaced_job(
        NAMESPACE,
        client.V1Job(
            metadata=client.V1ObjectMeta(
                name=name,
                labels=template.metadata.labels,
                annotations={"cronjob.kubernetes.io/instantiate": "manual"},
                # Owned by the CronJob, as kubectl makes it: its controller records the Job's success.
                owner_references=[
                    client.V1OwnerReference(
                        api_version="batch/v1",
                        kind="CronJob",
                        name=cronjob,
                        uid=owner.metadata.uid,
                        controller=True,
                        block_owner_deletion=True,
                    )
                ],
            ),
            spec=template.spec,
        ),
    )


def succeeded(cluster, job: str) -> bool:
    """The Job is Complete; a failure ends the test once the Job gave up (its retries spent)."""
    status = client.BatchV1Api(cluster.api).read_namespaced_job_status(job, NAMESPACE).status
    conditions = {condition.type for condition in status.conditions or [] if condition.status == "True"}
    if "Failed" in conditions:
        logs = [
            cluster.core.read_namespaced_pod_log(pod.metadata.name, NAMESPACE)
            for pod in cluster.core.list_namespaced_pod(NAMESPACE, label_selector=f"job-name={job}").items
        ]
        pytest.fail(f"Job {job} failed: {logs}", pytrace=False)
    return "Complete" in conditions


def volume() -> Path:
    """Where the claim `backups` keeps its files on this machine: the local cluster's hostPath
    volume, or, on kind, the provisioner's folder for that claim."""
    if not KIND_CLUSTER:
        return STATE_DIR / "volumes" / "backups"
    (folder,) = KIND_VOLUMES.glob(f"*_{NAMESPACE}_backups")
    return folder


def newest(pattern: str, after: set[str]) -> Path:
    made = sorted(path for path in volume().glob(pattern) if path.name not in after)
    assert len(made) == 1, f"one new {pattern} in {volume()}: {[path.name for path in made]}"
    return made[0]


@pytest.fixture(scope="module")
def backups(cluster) -> Iterator[dict]:
    """A journey's rows in every database, then one Job of each backup CronJob, all succeeded: the
    new backup files, and every database's row counts at that moment."""
    with cluster.session() as session:
        journey_run(cluster.urls, http=session)
    before = {path.name for path in volume().glob("**/*.age")}
    suffix = uuid.uuid4().hex[:6]
    jobs = {name: f"{name}-drill-{suffix}" for name in (*(f"{s}-backup" for s in SERVICES), SECRETS_BACKUP)}
    for cronjob, job in jobs.items():
        job_from_cronjob(cluster, cronjob, job)
    batch = client.BatchV1Api(cluster.api)
    try:
        for job in jobs.values():
            wait_until(lambda job=job: succeeded(cluster, job), timeout=300, interval=2, message=f"Job {job} succeeds")
        yield {
            "dumps": {service: newest(f"{service}-*.dump.age", before) for service in SERVICES},
            "secrets": newest("secrets/platform-secrets-*.file.age", before),
            "counts": {service: row_counts(cluster, service) for service in SERVICES},
        }
    finally:
        for job in jobs.values():
            batch.delete_namespaced_job(job, NAMESPACE, propagation_policy="Background")


def test_each_backup_cronjob_records_its_success_where_the_backup_alerts_read_it(cluster, backups):
    """DatabaseBackupTooOld and SecretsBackupTooOld read kube-state-metrics' last success of each."""
    cronjobs = {*(f"{service}-backup" for service in SERVICES), SECRETS_BACKUP}

    def recorded() -> set[str]:
        samples = prometheus_query(cluster, f'{LAST_SUCCESS}{{job="kube-state-metrics", namespace="{NAMESPACE}"}}')
        return {sample["metric"]["cronjob"] for sample in samples} & cronjobs

    wait_until(lambda: recorded() == cronjobs, timeout=90, interval=3, message=f"{LAST_SUCCESS} of {sorted(cronjobs)}")
    for alert in ("DatabaseBackupTooOld", "SecretsBackupTooOld"):
        assert prometheus_query(cluster, f'ALERTS{{alertname="{alert}"}}') == []


def test_every_backup_is_encrypted_complete_and_kept_beside_its_checksum(backups):
    for backup in [*backups["dumps"].values(), backups["secrets"]]:
        assert backup.read_bytes().startswith(b"age-encryption.org/v1\n"), backup
        checksum = backup.with_name(backup.name + ".sha256")
        assert checksum.read_text().split() == [
            subprocess.check_output(["sha256sum", backup], text=True).split()[0],
            backup.name,
        ]
    assert list(volume().glob("**/*.partial")) == []


@pytest.fixture(scope="module")
def restored(cluster, backups) -> Iterator[dict[str, dict[str, int]]]:
    """Each service's dump restored by restore.sh in a pod of the backup image, into a new database
    owned by the service's role: every restored database's row counts."""
    suffix = uuid.uuid4().hex[:6]
    identity = f"backup-identity-drill-{suffix}"
    cluster.core.create_namespaced_secret(
        NAMESPACE,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=identity),
            data={"identity.txt": base64.b64encode((SECRETS_DIR / "backup-identity.txt").read_bytes()).decode()},
        ),
    )
    image = client.BatchV1Api(cluster.api).read_namespaced_cron_job(f"{SERVICES[0]}-backup", NAMESPACE)
    image = image.spec.job_template.spec.template.spec.containers[0].image
    pods, databases = [], []
    try:
        for service, dump in backups["dumps"].items():
            database = f"{service}_restored_{suffix}"
            psql(cluster, "postgres", f'CREATE DATABASE "{database}" OWNER "{service}"')
            databases.append(database)
            pods.append(restore_pod(cluster, service, image=image, identity=identity, dump=dump, database=database))
        for pod in pods:
            wait_until(lambda pod=pod: pod_done(cluster, pod), timeout=180, interval=2, message=f"{pod} restores")
        yield {service: row_counts(cluster, f"{service}_restored_{suffix}") for service in SERVICES}
    finally:
        for pod in pods:
            cluster.core.delete_namespaced_pod(pod, NAMESPACE, grace_period_seconds=0)
        cluster.core.delete_namespaced_secret(identity, NAMESPACE)
        for database in databases:
            psql(cluster, "postgres", f'DROP DATABASE IF EXISTS "{database}"')


def restore_pod(cluster, service: str, *, image: str, identity: str, dump: Path, database: str) -> str:
    """A pod that restores `dump` into `database` as the service's role, with the labels that let it
    reach the database; its name."""
    url = urlsplit(
        base64.b64decode(
            cluster.core.read_namespaced_secret(f"{service}-secrets", NAMESPACE).data["DATABASE_URL"]
        ).decode()
    )
    target = urlunsplit(url._replace(path=f"/{database}"))
    name = f"{service}-restore-{database.rsplit('_', 1)[1]}"
    labels = {"app.kubernetes.io/name": service, "app.kubernetes.io/component": "backup"}
    cluster.core.create_namespaced_pod(
        NAMESPACE,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            spec=client.V1PodSpec(
                restart_policy="Never",
                automount_service_account_token=False,
                enable_service_links=False,
                security_context=client.V1PodSecurityContext(
                    run_as_non_root=True,
                    run_as_user=999,
                    run_as_group=999,
                    seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
                ),
                containers=[
                    client.V1Container(
                        name="restore",
                        image=image,
                        image_pull_policy="IfNotPresent",
                        command=["restore.sh"],
                        env=[
                            client.V1EnvVar(name="BACKUP_FILE", value=f"/backups/{dump.relative_to(volume())}"),
                            client.V1EnvVar(name="BACKUP_IDENTITY_FILE", value="/identity/identity.txt"),
                            client.V1EnvVar(name="DATABASE_URL", value=target),
                        ],
                        security_context=client.V1SecurityContext(
                            allow_privilege_escalation=False,
                            read_only_root_filesystem=True,
                            capabilities=client.V1Capabilities(drop=["ALL"]),
                        ),
                        volume_mounts=[
                            client.V1VolumeMount(name="backups", mount_path="/backups", read_only=True),
                            client.V1VolumeMount(name="identity", mount_path="/identity", read_only=True),
                            client.V1VolumeMount(name="tmp", mount_path="/tmp"),  # noqa: S108 (the container's own)
                        ],
                    )
                ],
                volumes=[
                    client.V1Volume(
                        name="backups",
                        persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                            claim_name="backups", read_only=True
                        ),
                    ),
                    client.V1Volume(name="identity", secret=client.V1SecretVolumeSource(secret_name=identity)),
                    client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource(size_limit="64Mi")),
                ],
            ),
        ),
    )
    return name


def pod_done(cluster, pod: str) -> bool:
    phase = cluster.core.read_namespaced_pod(pod, NAMESPACE).status.phase
    if phase == "Failed":
        pytest.fail(f"{pod} failed: {cluster.core.read_namespaced_pod_log(pod, NAMESPACE)}", pytrace=False)
    return phase == "Succeeded"


def test_every_services_dump_restores_with_every_tables_rows(backups, restored):
    assert restored == backups["counts"]
    assert all(counts["django_migrations"] > 0 for counts in restored.values())
    assert restored["orders"]["orders_order"] >= 2  # the journey's paid and declined orders at least


def test_the_secrets_backup_holds_every_secret_key_by_key_the_signing_key_among_them(cluster, backups, tmp_path):
    archive = tmp_path / "secrets.tar"
    subprocess.run(
        [REPO / "platform" / "dr" / "restore.sh"],
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "BACKUP_FILE": str(backups["secrets"]),
            "BACKUP_IDENTITY_FILE": str(SECRETS_DIR / "backup-identity.txt"),
            "RESTORE_TO": str(archive),
        },
        check=True,
        timeout=60,
    )
    with tarfile.open(archive) as tar:
        backed_up = {
            tuple(Path(member.name).parts[-2:]): tar.extractfile(member).read() for member in tar if member.isfile()
        }
    live = {
        (name, key): base64.b64decode(value)
        for name in SECRETS
        for key, value in cluster.core.read_namespaced_secret(name, NAMESPACE).data.items()
    }
    assert backed_up == live
    assert backed_up[("auth-signing-key", "signing-key.pem")].startswith(b"-----BEGIN PRIVATE KEY-----")
