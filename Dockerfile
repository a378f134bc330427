# One image; the command picks the process: api (default), worker or test_merchant.
FROM python:3.11-slim
# HOST: gunicorn binds 127.0.0.1 unless told; in a container nginx and the healthchecks connect from outside.
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HOST=0.0.0.0
WORKDIR /srv
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
# .dockerignore keeps local state out (.data/secret_key, the embedded database, .venv, .git).
RUN useradd --system --home /srv gateway && mkdir -p /srv/.data && chown gateway /srv/.data
USER gateway
EXPOSE 8000 3002
ENTRYPOINT ["python", "-m", "app.launcher"]
CMD ["api"]
