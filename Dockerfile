# trustpub: the exchange service (and the companion registry) in one image.
#   docker build -t trustpub .
#   docker run -p 8080:8080 -v trustpub-data:/var/lib/trustpub \
#       -e TRUSTPUB_PUBLIC_URL=https://crates.example.com \
#       -v "$PWD/policies:/etc/trustpub/policies:ro" trustpub
# Set TRUSTPUB_PUBLIC_URL: the audience tokens must carry is derived from it.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY trustpub ./trustpub
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --home-dir /var/lib/trustpub --create-home trustpub \
    && mkdir -p /etc/trustpub/policies
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER trustpub
WORKDIR /var/lib/trustpub
ENV TRUSTPUB_LISTEN=0.0.0.0:8080 \
    TRUSTPUB_POLICY_DIR=/etc/trustpub/policies \
    TRUSTPUB_STORE=sqlite:////var/lib/trustpub/trustpub.db \
    TRUSTPUB_DATA_DIR=/var/lib/trustpub/data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
ENTRYPOINT ["trustpub"]
CMD ["serve"]
