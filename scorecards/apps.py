from django.apps import AppConfig


class ScorecardsConfig(AppConfig):
    name = "scorecards"

    def ready(self) -> None:
        from governance.services import DEACTIVATION_BLOCKERS
        from scorecards.services import owned_kpis_blocker

        DEACTIVATION_BLOCKERS.append(owned_kpis_blocker)
