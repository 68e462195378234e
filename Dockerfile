# Gatehouse image: the same `gatehouse` command the README uses.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY protocols ./protocols
COPY ca_backends ./ca_backends
COPY migrations ./migrations
RUN pip install --no-cache-dir .
ENV GATEHOUSE_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8443 8080
ENTRYPOINT ["gatehouse"]
CMD ["up", "--https", "0.0.0.0:8443", "--http", "0.0.0.0:8080"]
