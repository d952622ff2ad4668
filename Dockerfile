# The Django image. One image runs three processes, chosen by the command:
#   web     gunicorn (the default command below)
#   worker  celery -A whatsapp_saas worker --loglevel=INFO
#   beat    celery -A whatsapp_saas beat --loglevel=INFO --schedule=/app/.run/celerybeat-schedule
# The gateway has its own image, built from gateway_node/Dockerfile.
# docker-compose.yml shows all of them together.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# gettext provides msgfmt for compilemessages; it stays in this stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gettext \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt

WORKDIR /app
COPY . .

# With DEBUG off the settings reject the development SECRET_KEY and gateway
# secret, so these build steps get throwaway values. The running container
# must be given real ones.
RUN export DEBUG=False SECRET_KEY=build-only WA_GATEWAY_SECRET=build-only \
    && if find . -name "*.po" -not -path "./.venv/*" | grep -q .; then \
        python manage.py compilemessages; \
    fi \
    && python manage.py collectstatic --noinput


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DEBUG=False \
    WEB_CONCURRENCY=3

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app

# The code stays owned by root and read-only for the app user; beat writes
# its schedule under .run.
RUN mkdir -p /app/.run && chown app:app /app/.run

USER app

EXPOSE 8000

# gunicorn takes the worker count from WEB_CONCURRENCY and extra options from
# GUNICORN_CMD_ARGS.
CMD ["gunicorn", "whatsapp_saas.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-", "--timeout", "30"]
