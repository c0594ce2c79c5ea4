"""platform/dr/backup.sh and restore.sh, run for real: age, pg_dump and pg_restore against PostgreSQL.

The database cases need the PostgreSQL server of the suite's DATABASE_URL (CI's second run) and are
skipped on SQLite; the file cases (auth's signing key, exported Secrets) need only age.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.live import Databases, free_port

REPO = Path(__file__).resolve().parent.parent.parent
BACKUP = REPO / "platform" / "dr" / "backup.sh"
RESTORE = REPO / "platform" / "dr" / "restore.sh"

pytestmark = pytest.mark.skipif(shutil.which("age") is None, reason="age is not installed (make system-packages)")

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="dumps and restores need the PostgreSQL of DATABASE_URL"
)


def script(path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(path)], env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, check=False, timeout=120
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("age")
    identity = folder / "identity.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True).stdout
    recipients = folder / "recipients.txt"
    recipients.write_text(public)
    other = folder / "other-identity.txt"
    subprocess.run(["age-keygen", "-o", str(other)], check=True, capture_output=True)
    return {"identity": identity, "recipients": recipients, "other": other}


def file_backup(keys, folder: Path, source: Path, **env: str) -> subprocess.CompletedProcess:
    return script(
        BACKUP,
        BACKUP_SOURCE_FILE=str(source),
        BACKUP_DIR=str(folder),
        BACKUP_NAME="auth-signing-key",
        BACKUP_RECIPIENTS_FILE=str(keys["recipients"]),
        **env,
    )


def test_a_file_backup_is_encrypted_and_restores_to_a_new_private_file(keys, tmp_path):
    source = tmp_path / "key.pem"
    source.write_text("-----BEGIN PRIVATE KEY-----\nsecret material\n")
    made = file_backup(keys, tmp_path / "backups", source)
    assert made.returncode == 0, made.stderr
    backup = Path(made.stdout.strip())
    assert backup.name.startswith("auth-signing-key-") and backup.name.endswith(".file.age")
    assert b"secret material" not in backup.read_bytes()

    target = tmp_path / "restored.pem"
    restored = script(
        RESTORE, BACKUP_FILE=str(backup), BACKUP_IDENTITY_FILE=str(keys["identity"]), RESTORE_TO=str(target)
    )
    assert restored.returncode == 0, restored.stderr
    assert target.read_text() == source.read_text()
    assert target.stat().st_mode & 0o777 == 0o600


def test_a_file_restore_never_overwrites(keys, tmp_path):
    source = tmp_path / "key.pem"
    source.write_text("new")
    backup = Path(file_backup(keys, tmp_path / "backups", source).stdout.strip())
    existing = tmp_path / "existing.pem"
    existing.write_text("what is there")
    refused = script(
        RESTORE, BACKUP_FILE=str(backup), BACKUP_IDENTITY_FILE=str(keys["identity"]), RESTORE_TO=str(existing)
    )
    assert refused.returncode == 2
    assert "exists" in refused.stderr
    assert existing.read_text() == "what is there"


def test_the_wrong_identity_restores_nothing(keys, tmp_path):
    source = tmp_path / "key.pem"
    source.write_text("secret")
    backup = Path(file_backup(keys, tmp_path / "backups", source).stdout.strip())
    target = tmp_path / "restored.pem"
    refused = script(RESTORE, BACKUP_FILE=str(backup), BACKUP_IDENTITY_FILE=str(keys["other"]), RESTORE_TO=str(target))
    assert refused.returncode != 0
    assert "no identity matched" in refused.stderr
    assert not target.exists() or target.read_bytes() == b""


def test_a_damaged_backup_is_refused_before_it_is_decrypted(keys, tmp_path):
    source = tmp_path / "key.pem"
    source.write_text("secret")
    backup = Path(file_backup(keys, tmp_path / "backups", source).stdout.strip())
    data = bytearray(backup.read_bytes())
    data[-1] ^= 0xFF
    backup.write_bytes(bytes(data))
    target = tmp_path / "restored.pem"
    refused = script(
        RESTORE, BACKUP_FILE=str(backup), BACKUP_IDENTITY_FILE=str(keys["identity"]), RESTORE_TO=str(target)
    )
    assert refused.returncode == 2
    assert "checksum mismatch" in refused.stderr
    assert not target.exists()


def test_retention_keeps_the_newest_backups_of_that_name_only(keys, tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    (folder / "orders-20200101T000000000Z.dump.age").write_text("another name's backup")
    source = tmp_path / "key.pem"
    source.write_text("secret")
    made = [Path(file_backup(keys, folder, source, BACKUP_KEEP="2").stdout.strip()) for _ in range(3)]
    kept = sorted(path.name for path in folder.glob("auth-signing-key-*.file.age"))
    assert kept == sorted(path.name for path in made[1:])
    assert not Path(f"{made[0]}.sha256").exists()
    assert (folder / "orders-20200101T000000000Z.dump.age").exists()


def test_a_bad_setting_is_refused_with_no_backup_written(keys, tmp_path):
    source = tmp_path / "key.pem"
    source.write_text("secret")
    refused = file_backup(keys, tmp_path / "backups", source, BACKUP_KEEP="0")
    assert refused.returncode == 2
    assert "BACKUP_KEEP must be a positive integer" in refused.stderr
    assert not (tmp_path / "backups").exists()


@pytest.fixture
def databases(tmp_path):
    """Databases of their own on the suite's server (tests/live.py's), dropped after."""
    created = Databases(tmp_path, _admin_url())
    yield created
    created.drop_all()


@pytest.fixture
def source_database(databases):
    """A table of known rows."""
    import psycopg

    url = databases.url_for("dr_source")
    with psycopg.connect(url) as connection:
        connection.execute("CREATE TABLE ledger (id bigserial PRIMARY KEY, amount bigint NOT NULL CHECK (amount > 0))")
        connection.execute("INSERT INTO ledger (amount) SELECT g FROM generate_series(1, 500) g")
    return url


@pytest.fixture
def empty_database(databases):
    return databases.url_for("dr_target")


def _admin_url() -> str:
    database = settings.DATABASES["default"]
    return f"postgres://{database['USER']}@{database['HOST']}:{database['PORT'] or 5432}/postgres"


def database_backup(keys, folder: Path, url: str) -> subprocess.CompletedProcess:
    return script(
        BACKUP,
        DATABASE_URL=url,
        BACKUP_DIR=str(folder),
        BACKUP_NAME="orders",
        BACKUP_RECIPIENTS_FILE=str(keys["recipients"]),
    )


def rows(url: str, query: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as connection:
        return connection.execute(query).fetchall()


@needs_postgres
def test_a_database_backup_restores_every_row_and_the_sequence(keys, tmp_path, source_database, empty_database):
    made = database_backup(keys, tmp_path, source_database)
    assert made.returncode == 0, made.stderr
    restored = script(
        RESTORE,
        BACKUP_FILE=made.stdout.strip(),
        BACKUP_IDENTITY_FILE=str(keys["identity"]),
        DATABASE_URL=empty_database,
    )
    assert restored.returncode == 0, restored.stderr
    assert rows(empty_database, "SELECT count(*), sum(amount) FROM ledger") == [(500, 125250)]
    rows(empty_database, "INSERT INTO ledger (amount) VALUES (7) RETURNING id")  # the sequence came back too
    assert rows(empty_database, "SELECT max(id) FROM ledger") == [(501,)]


@needs_postgres
def test_a_restore_into_a_database_that_has_tables_is_refused(keys, tmp_path, source_database):
    made = database_backup(keys, tmp_path, source_database)
    refused = script(
        RESTORE,
        BACKUP_FILE=made.stdout.strip(),
        BACKUP_IDENTITY_FILE=str(keys["identity"]),
        DATABASE_URL=source_database,
    )
    assert refused.returncode == 2
    assert "not empty" in refused.stderr
    assert rows(source_database, "SELECT count(*) FROM ledger") == [(500,)]


@needs_postgres
def test_a_restore_that_fails_leaves_the_target_empty(keys, tmp_path, source_database, empty_database):
    made = database_backup(keys, tmp_path, source_database)
    refused = script(
        RESTORE, BACKUP_FILE=made.stdout.strip(), BACKUP_IDENTITY_FILE=str(keys["other"]), DATABASE_URL=empty_database
    )
    assert refused.returncode != 0
    assert rows(empty_database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


@needs_postgres
def test_a_failed_dump_leaves_no_backup_behind(keys, tmp_path, source_database):
    missing = source_database.rsplit("/", 1)[0] + "/no_such_database"
    failed = database_backup(keys, tmp_path, missing)
    assert failed.returncode != 0
    assert list(tmp_path.iterdir()) == []


def drill_module():
    """platform/dr/drill.py, loaded from its path (`platform` is not a package: it would shadow the stdlib's)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("dr_drill", REPO / "platform" / "dr" / "drill.py")
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))  # dataclasses look it up
    spec.loader.exec_module(module)
    return module


@needs_postgres
def test_the_drills_checksums_see_one_changed_value_and_ignore_row_order(source_database, empty_database):
    import psycopg

    checksums = drill_module().table_checksums
    with psycopg.connect(source_database) as connection:
        before = checksums(connection)
    with psycopg.connect(empty_database) as connection:
        connection.execute("CREATE TABLE ledger (id bigserial PRIMARY KEY, amount bigint NOT NULL CHECK (amount > 0))")
        connection.execute("INSERT INTO ledger (id, amount) SELECT g, g FROM generate_series(500, 1, -1) g")
        same_rows_other_order = checksums(connection)
        connection.execute("UPDATE ledger SET amount = 1000 WHERE id = 250")
        one_changed = checksums(connection)
    assert before == same_rows_other_order
    assert before["ledger"][0] == 500
    assert one_changed["ledger"][0] == 500
    assert one_changed["ledger"][1] != before["ledger"][1]


@pytest.mark.skipif(shutil.which("pg_isready") is None, reason="PostgreSQL's client tools are not installed")
def test_a_dump_waits_for_the_database_then_gives_up_leaving_no_file(keys, tmp_path):
    """A fail-over, or a new pod whose network policy is not in place yet: backup.sh waits for the
    server to accept connections, BACKUP_WAIT_SECONDS at most, before it fails."""
    made = script(
        BACKUP,
        DATABASE_URL=f"postgres://orders@127.0.0.1:{free_port()}/orders",
        BACKUP_DIR=str(tmp_path / "backups"),
        BACKUP_NAME="orders",
        BACKUP_RECIPIENTS_FILE=str(keys["recipients"]),
        BACKUP_WAIT_SECONDS="2",
    )
    assert made.returncode == 1
    assert "the database accepted no connection within 2 s" in made.stderr
    assert list((tmp_path / "backups").iterdir()) == []
