"""schemathesis hooks for schema/openapi.json (tests/e2e/openapi.test.mjs loads them with SCHEMATHESIS_HOOKS).

An import file may be NDJSON (`application/x-ndjson`), which schemathesis has no serializer for: it is text, and
goes on the wire as it is, as text/plain would.
"""
import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        value = str(value)
    return value.encode("utf-8")
