import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
application = get_wsgi_application()

from governance.tenancy import refuse_privileged_role  # noqa: E402  (needs the app registry loaded above)

refuse_privileged_role(sweeps=False)
