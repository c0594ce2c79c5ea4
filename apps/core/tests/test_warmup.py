"""apps/core/warmup.py: the work every worker's first requests would repeat, done as the application
loads. That gunicorn does it once, in the arbiter, is tested with a real server in
tests/e2e/test_preload.py."""

import logging

from django.core.validators import EmailValidator
from django.urls import get_resolver
from django.utils.functional import empty

from apps.core import warmup


def test_preparing_compiles_the_url_and_validator_patterns_and_says_what_it_did(caplog):
    with caplog.at_level(logging.INFO, logger="apps.core.warmup"):
        found = warmup.prepare()
    # The email validator's domain pattern is the costly one (every Unicode letter).
    assert EmailValidator.domain_regex._wrapped is not empty
    assert found["validator_patterns"] >= 3
    assert found["url_patterns"] >= len(get_resolver().url_patterns)
    every_pattern = list(get_resolver().url_patterns)
    while every_pattern:
        entry = every_pattern.pop()
        assert entry.pattern.regex.pattern  # compiled, not waiting for a first request
        every_pattern.extend(getattr(entry, "url_patterns", []))
    [record] = [record for record in caplog.records if record.name == "apps.core.warmup"]
    assert record.getMessage() == "application prepared"
    assert (record.url_patterns, record.validator_patterns) == (found["url_patterns"], found["validator_patterns"])


def test_preparing_uses_no_database(django_db_blocker):
    """What it does is copied into every forked worker: a connection would be shared by all of them.
    Blocked, any query or connection (each goes through `ensure_connection`) raises."""
    with django_db_blocker.block():
        warmup.prepare()
