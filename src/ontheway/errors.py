"""The one exception hierarchy of ontheway.

Every error the core raises is an ``OnTheWayError``; the API turns each into
``{"error": {"code", "message", "field"}}`` with the status below, the CLI into
a message and a non-zero exit. Client-library errors (psycopg, redis) are
translated at the adapter boundary into ``DependencyUnavailable``.

    OnTheWayError                    500
    ├── InvalidInput                 422  bad input the edge could not catch
    ├── Unauthenticated              401  missing, malformed or expired token
    ├── Forbidden                    403  valid token, wrong role or resource
    ├── NotFound                     404
    ├── Conflict                     409  illegal transition, short stock, duplicate
    ├── RateLimited                  429
    ├── DependencyUnavailable        503  a shard, Redis or the graph is down
    └── ConfigurationError           500  settings or data files are wrong
        └── MissingPrerequisite           a binary or package to install
"""

from __future__ import annotations


class OnTheWayError(Exception):
    """Base of every ontheway error: a code, an HTTP status and the field at fault."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, dict[str, str | None]]:
        """Return the JSON error body of API.md."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class InvalidInput(OnTheWayError):
    """Input that is well-formed but wrong (e.g. an address outside every region)."""

    status = 422
    code = "invalid_input"


class Unauthenticated(OnTheWayError):
    """No token, or a token that is malformed, badly signed or expired."""

    status = 401
    code = "unauthenticated"


class Forbidden(OnTheWayError):
    """A valid token whose role or subject may not do this."""

    status = 403
    code = "forbidden"


class NotFound(OnTheWayError):
    """The resource does not exist (or is not visible to the caller)."""

    status = 404
    code = "not_found"


class Conflict(OnTheWayError):
    """The request clashes with the current state."""

    status = 409
    code = "conflict"


class RateLimited(OnTheWayError):
    """The caller sends faster than allowed."""

    status = 429
    code = "rate_limited"


class DependencyUnavailable(OnTheWayError):
    """A server we depend on (PostgreSQL shard, Redis, FalkorDB) does not answer."""

    status = 503
    code = "dependency_unavailable"


class ConfigurationError(OnTheWayError):
    """Settings, catalog or other local configuration is invalid."""

    status = 500
    code = "configuration_error"


class MissingPrerequisite(ConfigurationError):
    """Something must be installed first; the message says what and how."""

    code = "missing_prerequisite"
