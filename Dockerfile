# trustpub: the exchange service (and the companion registry) in one image.
#   docker build -t trustpub .
#   docker run -p 8080:8080 -v trustpub-data:/var/lib/trustpub \
#       -e TRUSTPUB_PUBLIC_URL=https://crates.example.com \
#       -v "$PWD/policies:/etc/trustpub/policies:ro" trustpub
# TRUSTPUB_PUBLIC_URL is required: the audience tokens must carry is derived from it.
# Needs BuildKit (the default builder of current Docker). scripts/test-container builds
# and runs this image; the README's "Container image" section shows how.
#
# Build inputs, all optional:
#   --build-arg PYTHON_IMAGE=...   the base (a Debian release tag; pin a digest if you like)
#   --build-arg SOURCE_URL=...     the repository, for the org.opencontainers.image.source label
#   --build-arg REVISION=...       the commit, for org.opencontainers.image.revision
#   --secret id=ca-certificates,src=FILE
#       extra CA certificates (PEM) trusted, besides the base's, while fetching packages:
#       for a package index reached through a TLS-intercepting proxy. Never stored in
#       the image; TLS verification stays on.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY constraints.txt pyproject.toml README.md LICENSE ./
COPY trustpub ./trustpub
# Wheels of trustpub and of its dependencies at the versions of constraints.txt; the
# build backend too is the pinned one (installed first, then used without isolation).
RUN --mount=type=secret,id=ca-certificates \
    set -eu; \
    if [ -s /run/secrets/ca-certificates ]; then \
        cat /etc/ssl/certs/ca-certificates.crt /run/secrets/ca-certificates \
            > /tmp/ca-certificates.pem 2>/dev/null \
            || cp /run/secrets/ca-certificates /tmp/ca-certificates.pem; \
        export PIP_CERT=/tmp/ca-certificates.pem; \
    fi; \
    python3 -m venv /opt/build; \
    /opt/build/bin/pip install --no-cache-dir --constraint constraints.txt setuptools; \
    /opt/build/bin/pip wheel --no-cache-dir --constraint constraints.txt \
        --no-build-isolation --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0.dev0
ARG SOURCE_URL=""
ARG REVISION=""
LABEL org.opencontainers.image.title="trustpub" \
      org.opencontainers.image.description="Trusted Publishing for Cargo registries" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${REVISION}"
# A fixed numeric user, so volume ownership and `runAsNonRoot` checks are predictable.
RUN groupadd --system --gid 10001 trustpub \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/trustpub \
        --create-home --shell /usr/sbin/nologin trustpub \
    && mkdir -p /etc/trustpub/policies
# Offline install from the wheels alone: exactly the pinned set, into its own venv.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python3 -m venv /opt/trustpub \
    && /opt/trustpub/bin/pip install --no-cache-dir --no-index --find-links /wheels trustpub \
    && /opt/trustpub/bin/trustpub --version
COPY docker/healthcheck.py /opt/trustpub/healthcheck.py
ENV PATH=/opt/trustpub/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    TRUSTPUB_LISTEN=0.0.0.0:8080 \
    TRUSTPUB_POLICY_DIR=/etc/trustpub/policies \
    TRUSTPUB_STORE=sqlite:////var/lib/trustpub/trustpub.db \
    TRUSTPUB_DATA_DIR=/var/lib/trustpub/data
USER 10001:10001
WORKDIR /var/lib/trustpub
EXPOSE 8080
# Readiness (store, policies, issuer keys) on the port trustpub is configured with.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/opt/trustpub/bin/python", "/opt/trustpub/healthcheck.py"]
ENTRYPOINT ["trustpub"]
CMD ["serve"]
