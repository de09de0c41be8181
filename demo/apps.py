from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo organizations and their history (`seed_demo`): installed for `make run` and the tests only."""

    name = "demo"
    label = "demo"
