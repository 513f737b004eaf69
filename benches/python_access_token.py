"""The access-token lookup a Python backend developer would write instead, measured on the
same stand-ins as ours (`benches/access_token.rs` runs it): the refresh token stored in
DynamoDB sealed with KMS `Encrypt`, and on every request a `GetItem`, a KMS `Decrypt` and
google-auth's `Credentials.refresh()` at the token endpoint. No cache shared between
instances, so every request is a Google call and Google's quota is spent per request.

With `--keep-token` (argv[2]), the better lookup: the access token is kept on the grant's
item with its expiry (in plain text: nothing seals it), so a request whose token has five
minutes left is one `GetItem`; otherwise it refreshes as above and writes the new token
back (`UpdateItem`). Each user is asked once before the measured request, as a warm cache.

Input: a JSON file (argv[1]) with the token endpoint, the client, the table, the key and
the users' refresh tokens. Output: one JSON line with wall-time percentiles and calls per
request.
"""

import datetime
import json
import sys
import time

import boto3
import google.auth.transport.requests
import google.oauth2.credentials
import requests


def main():
    with open(sys.argv[1]) as f:
        plan = json.load(f)
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

    # Stored once, as such a backend would at sign-in (not measured).
    users = plan["users"]
    for sub, refresh in users:
        sealed = kms.encrypt(KeyId=plan["key_id"], Plaintext=refresh.encode(), EncryptionContext={"sub": sub})
        dynamodb.put_item(
            TableName=plan["table"],
            Item={"sub": {"S": "py-" + sub}, "refresh_token": {"B": sealed["CiphertextBlob"]}},
        )

    keep = len(sys.argv) > 2 and sys.argv[2] == "--keep-token"

    def access_token(sub):
        item = dynamodb.get_item(TableName=plan["table"], Key={"sub": {"S": "py-" + sub}}, ConsistentRead=True)
        kept = item["Item"].get("access_token")
        if keep and kept and int(item["Item"]["expires_at"]["N"]) > time.time() + 300:
            return kept["S"]
        sealed = item["Item"]["refresh_token"]["B"]
        refresh = kms.decrypt(CiphertextBlob=sealed, EncryptionContext={"sub": sub})["Plaintext"].decode()
        credentials = google.oauth2.credentials.Credentials(
            None,
            refresh_token=refresh,
            token_uri=plan["token_uri"],
            client_id=plan["client_id"],
            client_secret=plan["client_secret"],
        )
        credentials.refresh(google_request)
        if keep:
            dynamodb.update_item(
                TableName=plan["table"],
                Key={"sub": {"S": "py-" + sub}},
                UpdateExpression="SET access_token = :t, expires_at = :e",
                ExpressionAttributeValues={
                    ":t": {"S": credentials.token},
                    ":e": {"N": str(int(credentials.expiry.replace(tzinfo=datetime.timezone.utc).timestamp()))},
                },
            )
        return credentials.token

    warm = plan["warm_up"]
    for sub, _ in users[:warm]:
        access_token(sub)
    if keep:
        for sub, _ in users[warm:]:
            access_token(sub)
    for key in calls:
        calls[key] = 0
    walls = []
    for sub, _ in users[warm:]:
        t = time.perf_counter()
        access_token(sub)
        walls.append(time.perf_counter() - t)
    walls.sort()
    n = len(walls)
    print(
        json.dumps(
            {
                "p50_ms": walls[n // 2] * 1e3,
                "p95_ms": walls[min(n - 1, round((n - 1) * 0.95))] * 1e3,
                "calls_per_request": {k: v / n for k, v in calls.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
