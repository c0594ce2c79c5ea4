# Expand only: a new column with a database default, so the color still live, whose code does not
# know the column, goes on inserting events while this color migrates.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0002_idempotency_requests_kept_and_checks"),
    ]

    operations = [
        migrations.AddField(
            model_name="paymentevent",
            name="traceparent",
            field=models.CharField(blank=True, db_default="", max_length=55),
        ),
    ]
