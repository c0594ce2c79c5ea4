"""The platform's database backends: Django's, with django-prometheus' query metrics recorded at less
cost per statement (apps.core.db.metrics), and PostgreSQL's health check without a round trip
(apps.core.db.postgresql)."""
