# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /build
COPY requirements.txt .
RUN python -m venv /opt/venv && /opt/venv/bin/pip install -r requirements.txt

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    ROUTIQ_PRODUCTION=true ROUTIQ_STATE_DIR=/app/.routiq \
    WEB_CONCURRENCY=2
RUN useradd --create-home --uid 10001 routiq
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=routiq:routiq . .
# collectstatic needs settings, not servers: placeholders that are never used to connect.
RUN SECRET_KEY=build ROUTIQ_ENCRYPTION_KEY=$(python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())") \
    DATABASE_URL=postgresql://build@localhost/build ROUTIQ_CHECK_SERVICES=false \
    python manage.py collectstatic --noinput \
    && chown -R routiq:routiq /app/staticfiles
USER routiq
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"
# The worker runs from the same image: docker run <image> python manage.py qcluster
# One uvicorn worker process per core (WEB_CONCURRENCY); the access log is left to the proxy.
CMD ["uvicorn", "routiq.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", "--no-server-header", "--no-access-log"]
