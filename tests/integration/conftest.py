"""The HTTP service's fixtures (tests/integration/http_fixtures.py), where pytest finds them
for every test here."""

from tests.integration.http_fixtures import (  # noqa: F401
    api,
    database_of_module,
    fresh_database,
    http_backend,
)
