# Expand only: a new column with a database default, so the color still live, whose code does not
# know the column, goes on queueing emails while this color migrates.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0002_email_queue_and_event_retention"),
    ]

    operations = [
        migrations.AddField(
            model_name="emaildelivery",
            name="traceparent",
            field=models.CharField(blank=True, db_default="", max_length=55),
        ),
    ]
