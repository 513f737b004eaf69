"""The sign-in a Python backend developer would write instead, measured on the same
stand-ins as ours (`benches/sign_in.rs` runs it): requests for the code exchange,
google-auth for the ID token, boto3 for KMS and DynamoDB. One `PutItem`, no idempotency
(a retried code reaches Google again and fails), no data-key cache (one KMS `Encrypt` per
refresh token).

Input: a JSON file (argv[1]) with the endpoints, the client, the table, the key and the
codes. Output: one JSON line with wall-time percentiles and calls per sign-in.
Variants (argv[2]): `kms` seals the refresh token with KMS `Encrypt` (what storing it
safely costs without envelope caching); `plaintext` stores it as it came.
"""

import json
import sys
import time

import boto3
import google.auth.transport.requests
import google.oauth2.id_token
import requests

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")


def main():
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    mode = sys.argv[2]
    calls = {"dynamodb": 0, "kms": 0, "google": 0}

    session = requests.Session()
    session.hooks["response"].append(lambda r, *a, **k: calls.__setitem__("google", calls["google"] + 1))
    google_request = google.auth.transport.requests.Request(session)
    dynamodb = boto3.client("dynamodb")
    kms = boto3.client("kms")
    for name, client in (("dynamodb", dynamodb), ("kms", kms)):
        client.meta.events.register(
            "before-send.*", lambda name=name, **kwargs: calls.__setitem__(name, calls[name] + 1)
        )

    def sign_in(code):
        answer = session.post(
            plan["token_uri"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": plan["client_id"],
                "client_secret": plan["client_secret"],
                "redirect_uri": "",
            },
            timeout=5,
        )
        answer.raise_for_status()
        tokens = answer.json()
        claims = google.oauth2.id_token.verify_token(
            tokens["id_token"], google_request, audience=plan["client_id"], certs_url=plan["certs_uri"]
        )
        if claims["iss"] not in GOOGLE_ISSUERS:
            raise ValueError("wrong issuer")
        refresh = tokens["refresh_token"]
        if mode == "kms":
            sealed = kms.encrypt(
                KeyId=plan["key_id"],
                Plaintext=refresh.encode(),
                EncryptionContext={"sub": claims["sub"]},
            )["CiphertextBlob"]
            token_attribute = {"B": sealed}
        else:
            token_attribute = {"S": refresh}
        dynamodb.put_item(
            TableName=plan["table"],
            Item={
                "sub": {"S": "py-" + claims["sub"]},
                "email": {"S": claims.get("email", "")},
                "scopes": {"S": tokens.get("scope", "")},
                "refresh_token": token_attribute,
            },
        )
        return {"sub": claims["sub"], "email": claims.get("email"), "scopes": tokens.get("scope", "").split()}

    codes = plan["codes"]
    warm = plan["warm_up"]
    for code in codes[:warm]:
        sign_in(code)
    for key in calls:
        calls[key] = 0
    walls = []
    for code in codes[warm:]:
        t = time.perf_counter()
        sign_in(code)
        walls.append(time.perf_counter() - t)
    walls.sort()
    n = len(walls)
    print(
        json.dumps(
            {
                "p50_ms": walls[n // 2] * 1e3,
                "p95_ms": walls[min(n - 1, round((n - 1) * 0.95))] * 1e3,
                "mean_ms": sum(walls) / n * 1e3,
                "calls_per_sign_in": {k: v / n for k, v in calls.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
