# The database defaults let the previous release, still running during a rolling upgrade, insert import jobs and
# data sources; paused_at is nullable.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('scorecards', '0012_calculated_kpis'),
    ]

    operations = [
        migrations.AddField(
            model_name='datasource',
            name='paused_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='datasource',
            name='task_after',
            field=models.PositiveSmallIntegerField(db_default=3, default=3),
        ),
        migrations.AddField(
            model_name='importjob',
            name='sheet',
            field=models.CharField(blank=True, db_default='', default='', max_length=100),
        ),
    ]
