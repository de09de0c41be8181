from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """Installed for its operators' commands (backup, restore, export and delete an organization); no models."""

    name = "config.operations"
    label = "operations"
