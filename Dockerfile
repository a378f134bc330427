# One image; the command picks the process: api (default), worker or test_merchant.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
RUN useradd --system --home /srv gateway && mkdir -p /srv/.data && chown gateway /srv/.data
USER gateway
EXPOSE 8000 3002
ENTRYPOINT ["python", "-m", "app.launcher"]
CMD ["api"]
