# One image, two processes: the API (the default command) and the worker (`python -m worker`).
# See docker-compose.yml for the stack around them.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    ENVIRONMENT=production

RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home statex \
    && mkdir /data && chown statex:statex /data

WORKDIR /app

# The dependencies first, in a layer of their own: rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-deps .

USER statex
EXPOSE 8000
# A container started without ENVIRONMENT runs as production: the default JWT secret is refused, /docs is off.
# `statex api` execs uvicorn (uvloop + httptools) with one process per core unless API_WORKERS says otherwise.
CMD ["python", "-m", "cli", "api"]
