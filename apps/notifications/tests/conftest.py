import pytest

from apps.core.testing import bearer_client, service_client_token, user_token


@pytest.fixture
def publisher(db):
    """A service allowed to publish events (as orders and payments are)."""
    return bearer_client(service_client_token(client_id="payments", scopes=["notifications:publish"]))


@pytest.fixture
def customer(db):
    user_id, token = user_token()
    return user_id, bearer_client(token)
