"""Domain errors with the stable ``code`` of DESIGN §6.

Raised anywhere; turned into RFC 9457 ``application/problem+json`` only at the HTTP edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class VotingError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid_request"
    title: ClassVar[str] = "Invalid request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


class InvalidRequest(VotingError):
    pass


class VoterRequired(VotingError):
    status, code, title = 401, "voter_required", "A valid voter credential is required"


class Unauthorized(VotingError):
    status, code, title = 401, "unauthorized", "Admin credentials are required"


class Forbidden(VotingError):
    status, code, title = 403, "forbidden", "This role may not do that"


class ChallengeFailed(VotingError):
    status, code, title = 403, "challenge_failed", "Proof of work missing, wrong or reused"


class Blocked(VotingError):
    status, code, title = 403, "blocked", "This voter or network is blocked"


class InvalidCode(VotingError):
    status, code, title = 400, "invalid_code", "The SMS code is wrong or no longer valid"


class VotingClosed(VotingError):
    status, code, title = 403, "voting_closed", "Voting is not open"


class CampaignNotFound(VotingError):
    status, code, title = 404, "campaign_not_found", "No such campaign"


class CandidateNotFound(VotingError):
    status, code, title = 404, "candidate_not_found", "No such candidate"


class NotFound(VotingError):
    status, code, title = 404, "not_found", "Not found"


class MethodNotAllowed(VotingError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


class Conflict(VotingError):
    status, code, title = 409, "conflict", "Already exists"


class AlreadyVoted(VotingError):
    status, code, title = 409, "already_voted", "You already voted for this candidate today"


class CandidateWithdrawn(VotingError):
    status, code, title = 409, "candidate_withdrawn", "This candidate has withdrawn"


class CandidateHasVotes(VotingError):
    status, code, title = (
        409, "candidate_has_votes",
        "A candidate with votes cannot be removed; withdraw them instead",
    )


class NotClosed(VotingError):
    status, code, title = 409, "voting_not_closed", "Voting has not closed yet"


class LedgerBehind(VotingError):
    status, code, title = (
        409, "ledger_behind", "Votes are still on their way to the ledger; try again shortly",
    )


class Published(VotingError):
    status, code, title = 409, "published", "The results are published and frozen"


class NotPublished(VotingError):
    status, code, title = 404, "not_published", "The results are not published yet"


class ImportRejected(VotingError):
    status, code, title = 422, "import_rejected", "The file was refused; nothing was imported"


class PayloadTooLarge(VotingError):
    status, code, title = 413, "invalid_request", "Request body too large"


class DailyQuotaExhausted(VotingError):
    status, code, title = 429, "daily_quota_exhausted", "No votes left today"


class RateLimited(VotingError):
    status, code, title = 429, "rate_limited", "Too many votes from this network"


class TooManyVoters(RateLimited):
    title = "Too many new voters from this network"


class TooManyCodes(RateLimited):
    title = "Too many SMS codes requested from this network or for this number"


class TooManyCodeChecks(RateLimited):
    title = "Too many SMS code checks from this network"


class TooManyStreams(VotingError):
    status, code, title = 429, "too_many_streams", "Too many live streams open from this network"


class StreamsFull(VotingError):
    status, code, title = (
        503, "streams_full", "This server holds as many live streams as it can; retry later")


class InternalError(VotingError):
    status, code, title = 500, "internal_error", "Internal error"


class Unavailable(VotingError):
    status, code, title = (
        503, "unavailable",
        "Temporarily unavailable; retry with the same vote_id (it is counted at most once)",
    )


# staff accounts and machine tokens (issue 25 §3, issue 23 §4)
class WeakPassword(VotingError):
    status, code, title = 400, "weak_password", "The new password is too short or too long"


class TooManyAttempts(VotingError):
    """Failed sign-ins or bearer tokens past the limit of an address, network or account;
    ``Retry-After`` says when the window ends (right credentials wait too)."""

    status, code, title = 429, "too_many_attempts", "Too many failed attempts; try again later"
# --- issue 25: WeChat sign-in, SMS providers and budgets ----------------------------------


class WechatNotConfigured(VotingError):
    status, code, title = 404, "wechat_not_configured", "WeChat sign-in is not set up here"


class WechatStateInvalid(VotingError):
    status, code, title = (
        400, "wechat_state_invalid",
        "The WeChat sign-in was not started here or took too long; open the vote page again",
    )


class WechatCodeInvalid(VotingError):
    status, code, title = 400, "wechat_code_invalid", "WeChat did not accept the sign-in code"


class WechatCodeUsed(VotingError):
    status, code, title = 400, "wechat_code_used", "This WeChat sign-in code was already used"


class WechatSnapshotUser(VotingError):
    status, code, title = (
        403, "wechat_snapshot_user",
        "WeChat shows this page as a snapshot (快照页); tap 使用完整服务 and vote from there",
    )


class WechatRateLimited(VotingError):
    status, code, title = 429, "wechat_rate_limited", "WeChat is limiting sign-ins; retry soon"


class WechatUnavailable(VotingError):
    status, code, title = 503, "wechat_unavailable", "WeChat sign-in is unavailable right now"


class SmsBudgetExhausted(VotingError):
    status, code, title = (
        429, "sms_budget_exhausted", "The service's SMS budget is used up for now",
    )


class SmsPrefixLimited(VotingError):
    status, code, title = (
        429, "sms_prefix_limited", "Too many SMS codes to numbers like this one today",
    )


class SmsThrottled(VotingError):
    status, code, title = 429, "sms_throttled", "The SMS provider is limiting this number"


class SmsNumberRefused(VotingError):
    status, code, title = 400, "sms_number_invalid", "The SMS provider refused this number"


class SmsOutOfBalance(VotingError):
    status, code, title = (
        503, "sms_out_of_balance", "SMS cannot be sent right now (the account is out of balance)",
    )


class SmsProviderError(VotingError):
    status, code, title = 503, "sms_provider_error", "The SMS provider did not take the message"
# -- transparency log (issue #26) -----------------------------------------------------------


class NoHead(VotingError):
    status, code, title = 404, "no_tree_head", "No signed tree head of that size"


class NotInLog(VotingError):
    status, code, title = 404, "not_in_log", "The vote is not in the log's signed tree yet"


class LogBehind(VotingError):
    status, code, title = 503, "log_behind", "The log's tree is being built; retry shortly"
