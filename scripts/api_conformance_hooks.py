"""Schemathesis hooks of scripts/api-conformance (SCHEMATHESIS_HOOKS=api_conformance_hooks).

A well-behaved client sends a fresh Idempotency-Key with every new request: a valid key that
schemathesis generated is replaced by a fresh UUID (still valid), so that two different
generated requests do not share a key and get the documented 422 for a reused key. Invalid keys
(the negative cases: empty, too long, control characters) are sent as generated. Replays with
the same key are tested in tests/it/api_idempotency.rs.
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"^[!#-~]([ !#-~]*[!#-~])?$")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    headers = case.headers or {}
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and len(key) <= 255 and VALID_KEY.match(key):
        headers["Idempotency-Key"] = str(uuid.uuid4())
        case.headers = headers
