"""The platform's settings, with one more middleware, innermost: the slow release's regression."""

from apps.settings import *  # noqa: F403 (every setting as it is)
from apps.settings import MIDDLEWARE

MIDDLEWARE = [*MIDDLEWARE, "slow_middleware.SlowMiddleware"]
