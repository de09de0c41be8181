import os
from pathlib import Path

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
application = get_wsgi_application()

from django.template import engines  # noqa: E402  (these need the app registry loaded above)
from django.urls import get_resolver  # noqa: E402

from governance.tenancy import refuse_privileged_role  # noqa: E402

refuse_privileged_role(sweeps=False)


def warm_up() -> None:
    """Imports every view and compiles every template of the project now rather than in each worker's first
    requests: gunicorn loads this module once before forking (config/gunicorn.py), so every worker, recycled ones
    included, inherits them ready."""
    get_resolver().url_patterns  # noqa: B018  (the property imports every URLconf, and so every view)
    engine = engines["django"]
    for directory in map(Path, engine.engine.dirs):
        for template in directory.rglob("*.html"):
            engine.get_template(str(template.relative_to(directory)))


warm_up()
