#!/bin/sh
# certbot --manual-auth-hook / --manual-cleanup-hook that writes the
# challenge value with RFC 2136 (nsupdate -k), the way acme.sh's dns_nsupdate
# does with --domain-alias <subdomain>.<zone>: the update goes to the
# delegated name, which the customer's _acme-challenge CNAME points at.
#   NSUPDATE_SERVER, NSUPDATE_PORT, NSUPDATE_ZONE, NSUPDATE_KEY (key file),
#   NSUPDATE_ALIAS (<subdomain>.<zone>), NSUPDATE_LOG (one line per call).
# $1 is "auth" or "cleanup"; certbot sets CERTBOT_DOMAIN and
# CERTBOT_VALIDATION.
set -eu
case "$1" in
auth) op="update add $NSUPDATE_ALIAS. 60 TXT \"$CERTBOT_VALIDATION\"" ;;
cleanup) op="update delete $NSUPDATE_ALIAS. TXT \"$CERTBOT_VALIDATION\"" ;;
*) echo "usage: $0 auth|cleanup" >&2; exit 2 ;;
esac
printf 'server %s %s\nzone %s\n%s\nsend\n' "$NSUPDATE_SERVER" "$NSUPDATE_PORT" "$NSUPDATE_ZONE" "$op" |
	nsupdate -k "$NSUPDATE_KEY"
echo "$1 $CERTBOT_DOMAIN ok" >>"$NSUPDATE_LOG"
