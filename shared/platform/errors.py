"""Domain errors. Logic raises these; shared/platform/http.py maps them to HTTP in exactly one
place."""

from __future__ import annotations


class AppError(Exception):
    status = 500
    code = "internal_error"
    default_message = "Something went wrong. Try again later."

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None,
                 details: list | None = None):
        self.message = message or self.default_message
        self.headers = headers or {}
        self.details = details
        super().__init__(self.message)


class Unauthorized(AppError):
    status, code, default_message = 401, "unauthorized", "A valid sign-in is required."


class Forbidden(AppError):
    status, code, default_message = 403, "forbidden", "This action needs the admin role."


class NotFound(AppError):
    status, code, default_message = 404, "not_found", "Not found."


class InvalidInput(AppError):
    status, code, default_message = 422, "validation_error", "The request is not valid."


class Conflict(AppError):
    status, code, default_message = 409, "conflict", "This conflicts with existing data."


class PayloadTooLarge(AppError):
    status, code, default_message = 413, "payload_too_large", "The request body is too large."


class MetaNotConnected(AppError):
    status, code = 409, "meta_not_connected"
    default_message = "Connect a Meta account first."


class MetaReconnectRequired(AppError):
    status, code = 409, "meta_reconnect_required"
    default_message = "The Meta connection stopped working. Reconnect Meta Ads."


class MetaRateLimited(AppError):
    status, code = 429, "meta_rate_limited"
    default_message = "Meta is rate limiting this account. Try again later."

    def __init__(self, retry_after_seconds: int, message: str | None = None):
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after_seconds)))})


class TooManyMetaRequests(AppError):
    """This tenant's budget of Meta calls made on a click is spent (shared.connection.budget):
    ours, not Meta's, so that one tenant cannot use up the app's Meta rate limit for all."""

    status, code = 429, "rate_limited"
    default_message = "Too many requests to Meta from this account. Try again shortly."

    def __init__(self, retry_after_seconds: int):
        seconds = max(1, int(retry_after_seconds))
        super().__init__(f"Too many requests to Meta from this account. Try again in {seconds} "
                         "seconds.", headers={"Retry-After": str(seconds)})


class AccountNotAccessible(AppError):
    status, code = 400, "account_not_accessible"
    default_message = "Meta denies access to this ad account with the connected token."


class MetaUnavailable(AppError):
    status, code = 502, "meta_error"
    default_message = "Meta could not be reached or refused the request. Try again later."


class BadRequest(AppError):
    status, code, default_message = 400, "bad_request", "The request could not be read."


class WhatsAppNumberUnavailable(AppError):
    """The number cannot be this tenant's sender. Says nothing of why: the reason is that another
    tenant holds it, and one tenant must not learn anything about another."""

    status, code = 409, "whatsapp_number_unavailable"
    default_message = ("This WhatsApp number cannot be connected to this account. If it should "
                       "be, contact support.")


class WhatsAppNotConnected(AppError):
    status, code = 409, "whatsapp_not_connected"
    default_message = "Connect a WhatsApp sender first."


class MissingScopes(AppError):
    """The connection lacks optional permissions a feature needs (Lead Ads): a reconnect that
    grants them fixes it."""

    status, code = 409, "missing_scopes"
    default_message = ("The Meta connection lacks permissions this needs. Reconnect Meta and "
                       "allow every permission asked for.")


class PageNotAccessible(AppError):
    status, code = 400, "page_not_accessible"
    default_message = "Meta denies access to this Facebook Page with the connected token."


class PageUnavailable(AppError):
    """Like WhatsAppNumberUnavailable: the Page feeds another CRM account, and nothing says so."""

    status, code = 409, "page_unavailable"
    default_message = ("This Facebook Page cannot be connected to this account. If it should be, "
                       "contact support.")


class UpstreamError(Exception):
    """An outside service (Meta) failed in a way the logic did not turn into an AppError of its
    own. The HTTP edge answers it as MetaUnavailable and logs only `code` and `subcode`; the
    Graph client's errors (shared.meta.errors.MetaError) are this kind, so the edge needs no
    import of the client."""

    code: int | None = None
    subcode: int | None = None
