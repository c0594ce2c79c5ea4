"""The platform's database backends: Django's, with django-prometheus's metrics, and what the
platform adds to them (apps.core.db.postgresql)."""
