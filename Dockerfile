# crackal backend and worker image (CPU). Build: docker compose build
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY crackal crackal
COPY selection selection
COPY training training
COPY backend backend
# CPU wheels of torch/torchvision keep the image small; versions as pinned in pyproject.toml.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        torch==2.14.1 torchvision==0.29.1 \
    && pip install --no-cache-dir '.[ops]'
ENV CRACKAL_REGISTRY=/data/registry CRACKAL_CACHE=/data/cache
EXPOSE 9090
CMD ["crackal", "serve", "--host", "0.0.0.0", "--port", "9090"]
