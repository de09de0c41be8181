from django.apps import AppConfig


class ScorecardsConfig(AppConfig):
    name = "scorecards"

    def ready(self) -> None:
        # Registers the tasks with Celery in every process (as Django does signals), so that services can queue
        # them by name.
        import scorecards.tasks  # noqa: F401
        from governance.identity.services import LEAVER_HANDLERS
        from governance.secrets import register_references
        from governance.services.members import DEACTIVATION_BLOCKERS
        from scorecards.ingestion.selectors import data_source_secret_references
        from scorecards.leavers import request_transfers_of_leaver
        from scorecards.services import owned_kpis_blocker

        DEACTIVATION_BLOCKERS.append(owned_kpis_blocker)
        register_references(data_source_secret_references)
        if request_transfers_of_leaver not in LEAVER_HANDLERS:
            LEAVER_HANDLERS.append(request_transfers_of_leaver)
