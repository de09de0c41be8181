#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    from django.core.management import execute_from_command_line

    from governance import tenancy

    # Commands are operators' tools, run with the deployment's own credentials: they see every organization.
    # The development server's requests run in threads of their own, scoped by the middleware like any other.
    with tenancy.scope(system=True):
        execute_from_command_line(sys.argv)
