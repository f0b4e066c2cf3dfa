# syntax=docker/dockerfile:1
# Multi-stage: cgo is needed for SQLite (github.com/mattn/go-sqlite3), so the
# build stage has gcc; the runtime stage has only the binary and its libc.
# .dockerignore keeps .git, local databases, certificates and keys out of
# the build context.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/delegated ./cmd/delegated

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/delegated --shell /usr/sbin/nologin delegated \
 && mkdir -p /etc/delegated /var/lib/delegated \
 && chown delegated:delegated /var/lib/delegated && chmod 0700 /var/lib/delegated
COPY --from=build /out/delegated /usr/local/bin/delegated
# No file capability for port 53: Docker (20.10 and later) sets
# net.ipv4.ip_unprivileged_port_start=0 in the container, and a binary with
# one would not start at all under --cap-drop ALL.
COPY deploy/docker/config.toml /etc/delegated/config.toml
USER delegated
EXPOSE 53/udp 53/tcp 8053
VOLUME ["/var/lib/delegated"]
# Asks the API's /health and the zone's SOA over DNS; no curl in the image.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/delegated", "health", "--config", "/etc/delegated/config.toml"]
ENTRYPOINT ["/usr/local/bin/delegated"]
CMD ["serve", "--config", "/etc/delegated/config.toml"]
