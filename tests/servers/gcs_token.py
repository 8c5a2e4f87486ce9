"""An OAuth 2.0 token endpoint for the tests of the `gcs` destination.

fake-gcs-server has none. This one accepts the JWT bearer grant (RFC 7523) that a
service account key signs, and only when its RS256 signature verifies against the
public key given on the command line (checked by `openssl dgst -verify`) and its claims
are those Google checks: issuer, audience (this endpoint's URL), scope, and a lifetime
of at most an hour that includes now. Anything else gets 400 or 401 with an OAuth error
code, as Google answers.

usage: python3 gcs_token.py PORT PUBLIC_KEY_PEM CLIENT_EMAIL
"""

import base64
import http.server
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse

PORT = int(sys.argv[1])
PUBLIC_KEY = sys.argv[2]
CLIENT_EMAIL = sys.argv[3]
AUDIENCE = f"http://127.0.0.1:{PORT}/token"


def b64decode(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def signature_ok(signed, signature):
    with tempfile.NamedTemporaryFile() as sig:
        sig.write(signature)
        sig.flush()
        done = subprocess.run(
            ["openssl", "dgst", "-sha256", "-verify", PUBLIC_KEY, "-signature", sig.name],
            input=signed, capture_output=True)
        return done.returncode == 0


def check(form):
    """None if the grant is good, else (status, oauth error, description)."""
    if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
        return 400, "unsupported_grant_type", "Invalid grant_type."
    assertion = form.get("assertion", [""])[0]
    parts = assertion.split(".")
    if len(parts) != 3:
        return 400, "invalid_grant", "Invalid JWT."
    try:
        header = json.loads(b64decode(parts[0]))
        claims = json.loads(b64decode(parts[1]))
        signature = b64decode(parts[2])
    except ValueError:
        return 400, "invalid_grant", "Invalid JWT."
    if header.get("alg") != "RS256":
        return 400, "invalid_grant", "Invalid JWT: alg."
    if not signature_ok(f"{parts[0]}.{parts[1]}".encode(), signature):
        return 401, "invalid_grant", "Invalid JWT Signature."
    now = time.time()
    if claims.get("iss") != CLIENT_EMAIL:
        return 401, "invalid_client", "The OAuth client was not found."
    if claims.get("aud") != AUDIENCE:
        return 400, "invalid_grant", "Invalid JWT: aud."
    if "devstorage" not in str(claims.get("scope", "")):
        return 400, "invalid_scope", "Invalid scope."
    iat, exp = claims.get("iat", 0), claims.get("exp", 0)
    if not (iat - 60 <= now <= exp) or exp - iat > 3600:
        return 400, "invalid_grant", "Invalid JWT: Token must be a short-lived token."
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        if self.path != "/token":
            return self.answer(404, {"error": "not_found"})
        refused = check(form)
        if refused:
            status, error, description = refused
            return self.answer(status, {"error": error, "error_description": description})
        token = "ya29.test-" + os.urandom(16).hex()
        self.answer(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
