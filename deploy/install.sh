#!/bin/sh
# Installs delegated as a systemd service (README.md, "Running it under
# systemd"). Run as root from the repository, after building the binary:
#
#   CGO_ENABLED=1 go build -trimpath -o delegated ./cmd/delegated
#   sh deploy/install.sh
#
# An existing /etc/delegated/config.toml is kept. DESTDIR installs into
# another root (packaging, tests) and skips systemctl; BIN names another
# binary than ./delegated.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-./delegated}
DESTDIR=${DESTDIR:-}
if [ ! -x "$BIN" ]; then
	echo "install.sh: no binary at $BIN; build it first: CGO_ENABLED=1 go build -trimpath -o delegated ./cmd/delegated" >&2
	exit 1
fi
umask 022
install -d -m 0755 "$DESTDIR/usr/local/bin" "$DESTDIR/etc/delegated" "$DESTDIR/etc/systemd/system"
install -m 0755 "$BIN" "$DESTDIR/usr/local/bin/delegated"
# The config may hold secrets and names only root needs to read: systemd
# passes the service its own copy (LoadCredential= in the unit).
if [ -e "$DESTDIR/etc/delegated/config.toml" ]; then
	echo "keeping the existing $DESTDIR/etc/delegated/config.toml"
	chmod 0600 "$DESTDIR/etc/delegated/config.toml"
else
	install -m 0600 deploy/systemd/config.toml "$DESTDIR/etc/delegated/config.toml"
fi
install -m 0644 deploy/delegated.service "$DESTDIR/etc/systemd/system/delegated.service"
if [ -z "$DESTDIR" ]; then
	systemctl daemon-reload
	echo "installed; edit /etc/delegated/config.toml, then: systemctl enable --now delegated"
fi
