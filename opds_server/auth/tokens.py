"""JWT access and refresh tokens (pyjwt, HS256 pinned: ``alg=none`` and algorithm swaps fail).

An access token lives 30 minutes and carries the user's ``token_version``; a refresh token lives 7
days, is spent once (rotation) and belongs to a family, so a reused refresh token revokes every
token descended from the same login.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Literal

import jwt
import msgspec

ALGORITHM = "HS256"
ACCESS_LIFETIME = dt.timedelta(minutes=30)
REFRESH_LIFETIME = dt.timedelta(days=7)
SESSION_LIFETIME = dt.timedelta(days=30)
"""A browser's login (the HTML view's cookie); logging out ends it on every instance."""
ISSUER = "opds-server"
MAX_TOKEN_LENGTH = 4096
TokenKind = Literal["access", "refresh", "session"]


class InvalidTokenError(ValueError):
    """A token that is malformed, forged, expired or of the wrong kind."""


class TokenClaims(msgspec.Struct, frozen=True, kw_only=True):
    kind: TokenKind
    user_id: int
    token_id: str
    family: str
    version: int
    expires_at: dt.datetime


class TokenPair(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    refresh_expires_in: int


class IssuedRefresh(msgspec.Struct, frozen=True, kw_only=True):
    token_id: str
    family: str
    expires_at: dt.datetime


class Tokens:
    """Signs and checks tokens with the server secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _encode(self, kind: TokenKind, claims: TokenClaims, *, now: dt.datetime) -> str:
        payload = {
            "iss": ISSUER,
            "sub": str(claims.user_id),
            "typ": kind,
            "ver": claims.version,
            "fam": claims.family,
            "jti": claims.token_id,
            "iat": int(now.timestamp()),
            "exp": int(claims.expires_at.timestamp()),
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def issue(
        self, user_id: int, version: int, *, now: dt.datetime, family: str | None = None
    ) -> tuple[TokenPair, IssuedRefresh]:
        """A new access and refresh token; a refresh rotation passes the family on."""
        family = family or secrets.token_urlsafe(16)
        access = TokenClaims(
            kind="access",
            user_id=user_id,
            token_id=secrets.token_urlsafe(12),
            family=family,
            version=version,
            expires_at=now + ACCESS_LIFETIME,
        )
        refresh = msgspec.structs.replace(
            access, kind="refresh", token_id=secrets.token_urlsafe(24), expires_at=now + REFRESH_LIFETIME
        )
        pair = TokenPair(
            access_token=self._encode("access", access, now=now),
            refresh_token=self._encode("refresh", refresh, now=now),
            token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret
            expires_in=int(ACCESS_LIFETIME.total_seconds()),
            refresh_expires_in=int(REFRESH_LIFETIME.total_seconds()),
        )
        return pair, IssuedRefresh(token_id=refresh.token_id, family=family, expires_at=refresh.expires_at)

    def issue_session(self, user_id: int, version: int, *, now: dt.datetime) -> tuple[str, TokenClaims]:
        """A browser session's token (the cookie's value) and its claims; its family names the session."""
        claims = TokenClaims(
            kind="session",
            user_id=user_id,
            token_id=secrets.token_urlsafe(12),
            family=secrets.token_urlsafe(16),
            version=version,
            expires_at=now + SESSION_LIFETIME,
        )
        return self._encode("session", claims, now=now), claims

    def decode(self, token: str, kind: TokenKind, *, now: dt.datetime) -> TokenClaims:
        """Check signature, algorithm, issuer, expiry and kind.

        Raises:
            InvalidTokenError: the token fails any check; the message says which, never echoing it.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidTokenError("the token is too long to be one of ours")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "jti", "typ", "ver", "fam"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidTokenError("the token is not valid") from exc
        if claims.get("typ") != kind:
            raise InvalidTokenError(f"this is not an {kind} token")
        try:
            decoded = TokenClaims(
                kind=kind,
                user_id=int(claims["sub"]),
                token_id=str(claims["jti"]),
                family=str(claims["fam"]),
                version=int(claims["ver"]),
                expires_at=dt.datetime.fromtimestamp(int(claims["exp"]), tz=dt.UTC),
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidTokenError("the token's claims are malformed") from exc
        if decoded.expires_at <= now:
            raise InvalidTokenError("the token has expired")
        return decoded
