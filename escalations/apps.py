from django.apps import AppConfig


class EscalationsConfig(AppConfig):
    name = "escalations"

    def ready(self) -> None:
        from escalations.notify.teams import teams_secret_references
        from governance.secrets import register_references

        register_references(teams_secret_references)
