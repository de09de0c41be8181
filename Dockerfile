# Steerco production image: gunicorn serves the WSGI app, whitenoise serves static files.
# The same image runs the Celery worker and beat (see docker-compose.yml).
FROM python:3.11-slim

# PYTHONPATH: import the apps from /app (not the copy in site-packages) so BASE_DIR is /app;
# templates/, static/ and var/ are resolved relative to it.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=config.settings.production

# Pango and a font: WeasyPrint lays out the steering pack PDF with them; Cairo: CairoSVG draws the deck's charts.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libcairo2 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system app \
    && useradd --system --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first, so this layer is reused until pyproject.toml changes.
# (With no source present yet, `pip install .` installs every dependency and an empty steerco dist.)
COPY pyproject.toml ./
RUN pip install --no-cache-dir . \
    && rm -rf build *.egg-info

# Application source (code stays root-owned and read-only for the app user).
COPY . .
RUN pip install --no-cache-dir --no-deps --force-reinstall . \
    && rm -rf build *.egg-info \
    && install -d -o app -g app /app/var

USER app

# Static files are collected at build time; the throwaway key exists only in this step.
RUN SECRET_KEY="collectstatic-only-$(python -c 'import secrets; print(secrets.token_hex(32))')" \
    API_TOKEN_KEY="collectstatic-only-$(python -c 'import secrets; print(secrets.token_hex(32))')" \
    SECRETS_KEYS="$(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    DATABASE_URL=sqlite:////tmp/x.sqlite3 \
    python manage.py collectstatic --noinput \
    && rm -f /tmp/x.sqlite3

EXPOSE 8000

CMD ["gunicorn", "-c", "python:config.gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
