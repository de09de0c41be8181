import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
application = get_asgi_application()

from governance.tenancy import refuse_privileged_role  # noqa: E402  (needs the app registry loaded above)

refuse_privileged_role(sweeps=False)
