#!/usr/bin/env python3
"""certbot manual hooks for an acme-dns-compatible server.

Written for delegated's end-to-end suite in the style of the widely used
acme-dns certbot hook (acme-dns-auth.py), so the suite sees the server the
way that hook does: it talks through Python requests, counts exactly 201 from
/register and exactly 200 from /update as success, and decodes error bodies
with .json() (a non-JSON error body makes it crash, as the original does).
It stores accounts in a JSON file keyed by the domain certbot passes.

Usage:
  acmedns_certbot_hook.py register DOMAIN  register an account for DOMAIN
                                           unless one is stored; print the
                                           CNAME record to create
  acmedns_certbot_hook.py auth             --manual-auth-hook
  acmedns_certbot_hook.py cleanup          --manual-cleanup-hook: delegated's
                                           /cleanup extension (acme-dns has
                                           no way to remove a value)

Environment:
  ACMEDNS_URL       the server's API, e.g. http://127.0.0.1:8053
  ACMEDNS_STORAGE   the JSON file of accounts
  ACMEDNS_HOOK_LOG  optional; one line per call: "<action> <domain> <status>"
  CERTBOT_DOMAIN, CERTBOT_VALIDATION  set by certbot for auth and cleanup
"""

import json
import os
import sys

import requests

TIMEOUT = 30


class AcmeDnsServer:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def register(self):
        # Like the original: no body and no Content-Type.
        res = requests.post(self.url + "/register", timeout=TIMEOUT)
        if res.status_code != 201:
            fail("register", res)
        return res.json(), res.status_code

    def update(self, account, value):
        headers = {
            "X-Api-User": account["username"],
            "X-Api-Key": account["password"],
            "Content-Type": "application/json",
        }
        body = {"subdomain": account["subdomain"], "txt": value}
        res = requests.post(self.url + "/update", headers=headers,
                            data=json.dumps(body), timeout=TIMEOUT)
        if res.status_code != 200:
            fail("update", res)
        return res.status_code

    def cleanup(self, account, value):
        # delegated's extension, shaped like lego's httpreq call: any 2xx.
        body = {"fqdn": account["fulldomain"] + ".", "value": value}
        res = requests.post(self.url + "/cleanup",
                            auth=(account["username"], account["password"]),
                            json=body, timeout=TIMEOUT)
        if res.status_code // 100 != 2:
            fail("cleanup", res)
        return res.status_code


def fail(what, res):
    detail = json.dumps(res.json(), indent=2, sort_keys=True)
    print("acme-dns {} failed: HTTP {}, response body:\n{}".format(
        what, res.status_code, detail), file=sys.stderr)
    sys.exit(1)


class Storage:
    def __init__(self, path):
        self.path = path
        try:
            with open(path) as f:
                self.accounts = json.load(f)
        except FileNotFoundError:
            self.accounts = {}

    def get(self, domain):
        return self.accounts.get(domain)

    def put(self, domain, account):
        self.accounts[domain] = account
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.accounts, f)


def note(action, domain, status):
    path = os.environ.get("ACMEDNS_HOOK_LOG")
    if path:
        with open(path, "a") as f:
            f.write("{} {} {}\n".format(action, domain, status))


def account_for(server, storage, domain):
    account = storage.get(domain)
    if account is None:
        account, status = server.register()
        storage.put(domain, account)
        note("register", domain, status)
        print("Create this record in the zone of {}:\n"
              "_acme-challenge.{}. CNAME {}.".format(domain, domain, account["fulldomain"]))
    return account


def main(argv):
    server = AcmeDnsServer(os.environ["ACMEDNS_URL"])
    storage = Storage(os.environ["ACMEDNS_STORAGE"])
    action = argv[1] if len(argv) > 1 else ""
    if action == "register" and len(argv) == 3:
        account_for(server, storage, argv[2])
    elif action == "auth":
        domain = os.environ["CERTBOT_DOMAIN"]
        account = account_for(server, storage, domain)
        note("auth", domain, server.update(account, os.environ["CERTBOT_VALIDATION"]))
    elif action == "cleanup":
        domain = os.environ["CERTBOT_DOMAIN"]
        account = storage.get(domain)
        if account is None:
            sys.exit("cleanup: no account stored for " + domain)
        note("cleanup", domain, server.cleanup(account, os.environ["CERTBOT_VALIDATION"]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
