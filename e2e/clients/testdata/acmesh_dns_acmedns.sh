#!/bin/sh
# What acme.sh's dnsapi/dns_acmedns.sh does on the wire, and how it reads
# the replies, reproduced for delegated's end-to-end suite so the suite can
# check those properties without installing acme.sh. Written for this suite.
# The properties it depends on:
#   - /register is POSTed with an empty body through curl --data, i.e. with
#     Content-Type application/x-www-form-urlencoded, and the reply is read
#     with line-based sed: it must be compact JSON on one line;
#   - /update is POSTed the same way (form content type, JSON text as the
#     body) and counts as done only if the reply contains the value in
#     double quotes; the HTTP status is not looked at.
#
# Usage:
#   acmesh_dns_acmedns.sh register FQDN      register, write $ACMEDNS_ENV and
#                                            print the CNAME to create for FQDN
#   acmesh_dns_acmedns.sh add FQDN VALUE     update with the stored account
#   acmesh_dns_acmedns.sh certbot-auth       add for certbot's hook variables
#
# Environment: ACMEDNS_BASE_URL; ACMEDNS_ENV (the stored account, sh syntax);
# ACMEDNS_RAW (optional: register keeps the raw reply there);
# ACMEDNS_HOOK_LOG (optional: one line per successful add).
set -eu

register() {
	fulldomain=$1
	response="$(curl -sS -X POST --data "" "$ACMEDNS_BASE_URL/register")"
	if [ -n "${ACMEDNS_RAW:-}" ]; then
		printf '%s' "$response" >"$ACMEDNS_RAW"
	fi
	# acme.sh's expressions, verbatim.
	username=$(echo "$response" | sed -n 's/^{.*\"username\":[ ]*\"\([^\"]*\)\".*}/\1/p')
	password=$(echo "$response" | sed -n 's/^{.*\"password\":[ ]*\"\([^\"]*\)\".*}/\1/p')
	subdomain=$(echo "$response" | sed -n 's/^{.*\"subdomain\":[ ]*\"\([^\"]*\)\".*}/\1/p')
	full=$(echo "$response" | sed -n 's/^{.*\"fulldomain\":[ ]*\"\([^\"]*\)\".*}/\1/p')
	if [ -z "$username" ] || [ -z "$password" ] || [ -z "$subdomain" ] || [ -z "$full" ]; then
		echo "register: cannot read the reply the way acme.sh does: $response" >&2
		exit 1
	fi
	(
		umask 077
		printf "ACMEDNS_USERNAME='%s'\nACMEDNS_PASSWORD='%s'\nACMEDNS_SUBDOMAIN='%s'\nACMEDNS_FULLDOMAIN='%s'\n" \
			"$username" "$password" "$subdomain" "$full" >"$ACMEDNS_ENV"
	)
	echo "# Create $fulldomain CNAME $full DNS entry #"
}

add() {
	fulldomain=$1
	txtvalue=$2
	. "$ACMEDNS_ENV"
	data="{\"subdomain\":\"$ACMEDNS_SUBDOMAIN\", \"txt\": \"$txtvalue\"}"
	response="$(curl -sS -X POST -H "X-Api-User: $ACMEDNS_USERNAME" -H "X-Api-Key: $ACMEDNS_PASSWORD" \
		--data "$data" "$ACMEDNS_BASE_URL/update")"
	if ! echo "$response" | grep "\"$txtvalue\"" >/dev/null; then
		echo "add $fulldomain: invalid response of acme-dns: $response" >&2
		exit 1
	fi
	if [ -n "${ACMEDNS_HOOK_LOG:-}" ]; then
		echo "add $fulldomain ok" >>"$ACMEDNS_HOOK_LOG"
	fi
}

case "${1:-}" in
register) register "$2" ;;
add) add "$2" "$3" ;;
certbot-auth) add "_acme-challenge.$CERTBOT_DOMAIN" "$CERTBOT_VALIDATION" ;;
*)
	echo "usage: $0 register FQDN | add FQDN VALUE | certbot-auth" >&2
	exit 2
	;;
esac
