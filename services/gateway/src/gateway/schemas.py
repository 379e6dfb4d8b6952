from pydantic import BaseModel, Field


class TokenResponse(BaseModel):
    """RFC 6749 section 5.1."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6749 token type, not a secret
    expires_in: int = Field(description="Seconds until the token expires")
    scope: str = Field(description="The roles the token carries, space-separated")
