import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from governance import tenancy


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    """`seed_demo` run once for the whole module (it takes seconds), outside the tests' rolled-back transactions.

    Yields the moment seeding began. Tests must leave the demo as they found it: each runs in its own transaction.
    """
    with django_db_blocker.unblock():
        seeded = timezone.now()
        with tenancy.scope(system=True):  # as manage.py runs it
            call_command("seed_demo", stdout=io.StringIO())
        yield seeded
        call_command("flush", "--no-input", reset_sequences=False, stdout=io.StringIO())
