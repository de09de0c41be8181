from django.apps import AppConfig


class DependenciesConfig(AppConfig):
    name = "dependencies"

    def ready(self) -> None:
        # Registers the tasks in every process, so that scorecards.ingestion.store can queue them by name.
        import dependencies.tasks  # noqa: F401
