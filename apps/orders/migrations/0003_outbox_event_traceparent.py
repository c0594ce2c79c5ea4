# Expand only: a new column with a database default, so the color still live, whose code does not
# know the column, goes on inserting events while this color migrates.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0002_order_cancellation_intents_and_refusals"),
    ]

    operations = [
        migrations.AddField(
            model_name="orderevent",
            name="traceparent",
            field=models.CharField(blank=True, db_default="", max_length=55),
        ),
    ]
