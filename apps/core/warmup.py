"""A worker's first-request work that every worker would repeat, done once as the application loads.

A fresh process that has imported Django and the models still, at its first requests, imports the
URLconf and with it every view module, serializer and DRF, compiles the URL patterns it matches, and
compiles the patterns of the models' validators. Measured on an idle machine (perf/README.md, "A
Failure drills"), a new payments worker's first charge took 124 ms against 8 ms for
the next ones, and orders' first placement 153 ms against 20; the largest single piece was Django
compiling the email validator's domain pattern (every Unicode letter, case-insensitive): 91 ms.

apps.wsgi calls `prepare()` as the application loads. gunicorn loads it once, in the arbiter, before
forking its workers (`preload_app`, platform/gunicorn.conf.py), so a pod pays this once, not once per
worker and again for every worker recycled, and never on a client's request. Only work inside the
process belongs here: nothing that opens a socket or a database connection, which a fork would share
between processes (each worker's token keys, service token and connections are its own, fetched by
its first requests).
"""

import logging
import time

from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils.functional import SimpleLazyObject

logger = logging.getLogger(__name__)


def _url_patterns(resolver: URLResolver) -> int:
    """Import the URLconf (and every view it names) and compile each pattern's regular expression,
    which Django does on first use; returns how many patterns there are."""
    count = 0
    pending: list[URLPattern | URLResolver] = list(resolver.url_patterns)
    while pending:
        entry = pending.pop()
        entry.pattern.regex  # noqa: B018 (compiled on first access)
        count += 1
        if isinstance(entry, URLResolver):
            pending.extend(entry.url_patterns)
    return count


def _validator_patterns() -> int:
    """Compile the lazily compiled patterns of every validator on the installed models' fields;
    returns how many there were."""
    seen: set[int] = set()
    for model in apps.get_models():
        for field in model._meta.get_fields():
            for validator in getattr(field, "validators", ()):
                namespaces = [vars(klass) for klass in type(validator).__mro__] + [vars(validator)]
                for value in (value for namespace in namespaces for value in namespace.values()):
                    if isinstance(value, SimpleLazyObject) and id(value) not in seen:
                        seen.add(id(value))
                        getattr(value, "pattern", None)  # the lazy object compiles on first use
    return len(seen)


def prepare() -> dict[str, float | int]:
    """Import every view, compile the URL and validator patterns; what was done and how long it took
    (ms) is logged as one line and returned."""
    started = time.perf_counter()
    found: dict[str, float | int] = {"url_patterns": _url_patterns(get_resolver())}
    found["url_patterns_ms"] = round((time.perf_counter() - started) * 1000, 1)
    step = time.perf_counter()
    found["validator_patterns"] = _validator_patterns()
    found["validator_patterns_ms"] = round((time.perf_counter() - step) * 1000, 1)
    found["ms"] = round((time.perf_counter() - started) * 1000, 1)
    logger.info("application prepared", extra=found)
    return found
