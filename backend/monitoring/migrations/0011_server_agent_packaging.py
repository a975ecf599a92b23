"""The server row keeps how its agent was installed (deb, zipapp, container, pip), as the agent says."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0010_snapshot_labels"),
    ]

    operations = [
        migrations.AddField(
            model_name="monitoredserver",
            name="agent_packaging",
            field=models.CharField(blank=True, default="", max_length=32),
        ),
    ]
