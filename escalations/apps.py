from django.apps import AppConfig


class EscalationsConfig(AppConfig):
    name = "escalations"

    def ready(self) -> None:
        from escalations.notify.teams import teams_secret_references
        from governance.secrets import register_references

        register_references(teams_secret_references)

        # The Slack channel (notify, below the engine) sends through the Slack app (above it), which it may not
        # import; and the app's Celery tasks live outside escalations.tasks, which autodiscovery reads.
        from escalations.notify.channels import slack as channel
        from escalations.slack import delivery, tasks  # noqa: F401

        channel.register(delivery.send)
