# syntax=docker/dockerfile:1
# Multi-stage: cgo is needed for SQLite (github.com/mattn/go-sqlite3), so the
# build stage has gcc; the runtime stage has only the binary and its libc.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/delegated ./cmd/delegated

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/delegated --shell /usr/sbin/nologin delegated \
 && mkdir -p /etc/delegated /var/lib/delegated \
 && chown delegated:delegated /var/lib/delegated && chmod 0700 /var/lib/delegated
COPY --from=build /out/delegated /usr/local/bin/delegated
# Port 53 without root: the binary alone gets CAP_NET_BIND_SERVICE.
RUN setcap cap_net_bind_service=+ep /usr/local/bin/delegated
COPY deploy/docker/config.toml /etc/delegated/config.toml
USER delegated
EXPOSE 53/udp 53/tcp 443
VOLUME ["/var/lib/delegated"]
ENTRYPOINT ["/usr/local/bin/delegated"]
CMD ["serve", "--config", "/etc/delegated/config.toml"]
