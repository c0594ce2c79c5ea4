"""The compose step that generates auth's signing key: its script, run here as compose runs it.

In compose it runs as root only to hand the key to the image's user; the test does the same, so it
needs root (as CI and the development machines have) and is skipped without it.
"""

import os
import stat
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.platform import compose, dockerfile

COMMAND = compose.load()["services"]["auth-signing-key"]["command"]
IMAGE_USER = tuple(int(part) for part in dockerfile.stages()[-1].all("USER")[-1].arguments.split(":"))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="handing the key to uid 10001 needs root, as in compose")


def run_step(key_file) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *COMMAND[1:]],
        env={"AUTH_SIGNING_KEY_FILE": str(key_file)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    key_file = tmp_path_factory.mktemp("auth-signing-key") / "key.pem"
    first = run_step(key_file)
    content = key_file.read_bytes()
    second = run_step(key_file)
    return {"key_file": key_file, "first": first, "second": second, "content": content}


def test_the_step_is_plain_python():
    assert COMMAND[:2] == ["python", "-c"]


def test_first_run_generates_the_key(generated):
    assert (generated["first"].returncode, generated["first"].stdout) == (
        0,
        f"auth signing key generated: {generated['key_file']}\n",
    )


def test_key_is_readable_by_the_image_user_only(generated):
    status = generated["key_file"].stat()
    assert ((status.st_uid, status.st_gid), stat.S_IMODE(status.st_mode)) == (IMAGE_USER, 0o400)


def test_key_is_an_rsa_key_auth_accepts(generated):
    key = serialization.load_pem_private_key(generated["content"], password=None)
    assert (isinstance(key, rsa.RSAPrivateKey), key.key_size) == (True, 2048)


def test_a_second_run_keeps_the_key(generated):
    assert (generated["second"].returncode, generated["key_file"].read_bytes()) == (0, generated["content"])
