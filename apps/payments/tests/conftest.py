import pytest

from apps.core.testing import bearer_client, service_client_token, user_token


@pytest.fixture
def orders_service(db):
    """The orders service's client, with the scopes platform/local-setup.sh gives it."""
    return bearer_client(
        service_client_token(client_id="orders", scopes=["payments:charge", "payments:refund", "notifications:publish"])
    )


@pytest.fixture
def customer(db):
    user_id, token = user_token()
    return user_id, bearer_client(token)
