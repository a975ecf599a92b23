# TrainWatch web app and Celery workers: one image, three commands (see docker-compose.yml).

# Front-end libraries come from npm, as in development (package.json + lockfile), on Node 24 LTS.
FROM node:24.20.0-bookworm-slim AS frontend
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11.13-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_STATIC_MANIFEST=1
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /app trainwatch
WORKDIR /app
# The web app's whole tree as locked, every file's hash checked (requirements.txt: `make lock`).
COPY requirements.txt ./
RUN pip install --require-hashes --no-deps -r requirements.txt
COPY backend/ backend/
COPY --from=frontend /build/node_modules/uplot/dist node_modules/uplot/dist
# Hashed, compressed static files for whitenoise; the key only satisfies settings at build time.
RUN DJANGO_SECRET_KEY=collectstatic-only python backend/manage.py collectstatic --no-input -v0 \
    && chown -R trainwatch:trainwatch /app
USER trainwatch
WORKDIR /app/backend
EXPOSE 8000
# Worker model, timeouts and worker count (WEB_CONCURRENCY): backend/gunicorn.conf.py.
CMD ["gunicorn", "trainwatch.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
