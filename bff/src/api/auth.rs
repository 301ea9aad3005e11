//! Login, refresh, logout, and the bearer check every protected endpoint uses.

use std::sync::Arc;

use chrono::Utc;
use poem_openapi::auth::Bearer;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, SecurityScheme};
use uuid::Uuid;

use super::errors::ApiError;
use super::models::{Credentials, ErrorBody, LogoutRequest, RefreshRequest, Role, TokenPair};
use super::Tag;
use crate::rate_limit::{ClientIp, RateLimited};
use crate::sessions::{self, Rotation, Session};
use crate::state::AppState;
use crate::tokens::{Claims, Subject, TokenType};
use crate::upstream::Checked;

/// A PASETO v4.public access token from `POST /api/v1/auth/login`.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "PASETO v4.public")]
pub struct BearerAuth(pub Bearer);

/// Verifies an access token, that its session is still live and its user still active;
/// the claims answered carry the user's current role (a demotion applies within the
/// revocation window, not at the token's expiry).
pub async fn authenticate(state: &AppState, auth: &BearerAuth) -> Result<Claims, ApiError> {
    let mut claims = state.keys.verify(&auth.0.token, TokenType::Access)?;
    let standing = match state.liveness.get(claims.sid) {
        Some(standing) => standing,
        None => {
            let standing = standing(state, claims.sid, claims.sub).await?;
            state.liveness.remember(claims.sid, standing);
            standing
        }
    };
    claims.role = standing.ok_or_else(ApiError::unauthorized)?;
    Ok(claims)
}

/// Asks the session store whether session `sid` is live, then user-service for the user's
/// current role and status (no database connection is held across the upstream call).
async fn standing(state: &AppState, sid: Uuid, user: Uuid) -> Result<sessions::Standing, ApiError> {
    let live = {
        let client = state.pool.get().await?;
        sessions::is_live(&client, sid).await?
    };
    if !live {
        return Ok(None);
    }
    current_role(state, user).await
}

/// The user's role if the account still exists and is active.
async fn current_role(state: &AppState, user: Uuid) -> Result<Option<Role>, ApiError> {
    Ok(state
        .upstream
        .user(user)
        .await?
        .filter(|user| user.is_active)
        .map(|user| user.role))
}

/// Like [`authenticate`], and the role must be `admin`.
pub async fn authenticate_admin(state: &AppState, auth: &BearerAuth) -> Result<Claims, ApiError> {
    let claims = authenticate(state, auth).await?;
    if claims.role != Role::Admin {
        return Err(ApiError::forbidden());
    }
    Ok(claims)
}

#[derive(Debug, ApiResponse)]
pub enum LogoutResponse {
    /// The session is revoked: its refresh token stops at once, its access tokens
    /// within 5 seconds.
    #[oai(status = 204)]
    LoggedOut,
}

#[derive(Debug)]
pub struct AuthApi {
    pub state: Arc<AppState>,
}

impl AuthApi {
    fn pair(&self, session: &Session, refresh_jti: Uuid) -> Result<TokenPair, ApiError> {
        let settings = &self.state.settings;
        let keys = &self.state.keys;
        let who = Subject {
            user: session.user_id,
            role: session.role,
            sid: session.id,
        };
        let access = keys.claims(
            TokenType::Access,
            who,
            Uuid::now_v7(),
            settings.access_ttl(),
            None,
        );
        let refresh = keys.claims(
            TokenType::Refresh,
            who,
            refresh_jti,
            settings.refresh_ttl(),
            Some(session.expires_at),
        );
        let sign = |claims| {
            keys.sign(claims)
                .map_err(|error| ApiError::internal(&error))
        };
        Ok(TokenPair {
            access_token: sign(&access)?,
            refresh_token: sign(&refresh)?,
            token_type: "Bearer".into(),
            expires_in: settings.access_token_ttl_secs,
        })
    }

    fn invalid_credentials() -> ApiError {
        ApiError::Unauthorized(Json(ErrorBody::new(
            "Unauthorized",
            "Invalid email or password.",
        )))
    }
}

#[OpenApi(tag = "Tag::Auth")]
impl AuthApi {
    /// Log in with email and password; answers an access and a refresh token.
    ///
    /// Unknown email and wrong password get the same 401; an inactive account gets 403.
    /// Besides the per-IP limit, each email (known or not) is throttled: after 5 failures
    /// in 15 minutes each further attempt must wait a doubling delay (1 s, 2 s, ... at
    /// most 15 minutes); one made sooner gets 429 with `Retry-After`. A success resets it,
    /// and a client that logged in to the account recently is not made to wait.
    #[oai(path = "/api/v1/auth/login", method = "post")]
    async fn login(
        &self,
        request: &poem::Request,
        body: Json<Credentials>,
    ) -> Result<Json<TokenPair>, ApiError> {
        let client = request.extensions().get::<ClientIp>().map(|ip| ip.0);
        let verdict = match self
            .state
            .upstream
            .verify_credentials(&body.0, client)
            .await?
        {
            Checked::Verdict(verdict) => verdict,
            Checked::Throttled { retry_after } => {
                metrics::counter!("bff_login_throttled_total").increment(1);
                return Err(ApiError::TooManyRequests(
                    Json(RateLimited::new(retry_after)),
                    retry_after.to_string(),
                ));
            }
        };
        let (Some(user_id), true) = (verdict.user_id, verdict.valid) else {
            return Err(Self::invalid_credentials());
        };
        if verdict.is_active == Some(false) {
            return Err(ApiError::Forbidden(Json(ErrorBody::new(
                "Forbidden",
                "This account is inactive.",
            ))));
        }
        let session = Session {
            id: Uuid::new_v4(),
            user_id,
            role: verdict.role.unwrap_or(Role::User),
            expires_at: Utc::now() + self.state.settings.refresh_ttl(),
        };
        let client = self.state.pool.get().await?;
        let jti = sessions::create(&client, &session).await?;
        metrics::counter!("bff_logins_total").increment(1);
        Ok(Json(self.pair(&session, jti)?))
    }

    /// Trade a refresh token for a new pair. Each refresh token works once; presenting
    /// a used one revokes the whole session.
    ///
    /// The new access token carries the user's current role; a deactivated or erased
    /// user's refresh is refused with 401 and their session revoked.
    #[oai(path = "/api/v1/auth/refresh", method = "post")]
    async fn refresh(&self, body: Json<RefreshRequest>) -> Result<Json<TokenPair>, ApiError> {
        let claims = self
            .state
            .keys
            .verify(&body.0.refresh_token, TokenType::Refresh)?;
        // The role and status are read again: a demoted admin is refreshed as a user, a
        // deactivated or erased user's session ends here.
        let Some(role) = current_role(&self.state, claims.sub).await? else {
            let client = self.state.pool.get().await?;
            sessions::revoke(&client, claims.sid, "account inactive").await?;
            self.state.liveness.revoked(claims.sid);
            return Err(ApiError::Unauthorized(Json(ErrorBody::new(
                "Unauthorized",
                "This account is no longer active; the session has been revoked.",
            ))));
        };
        let mut client = self.state.pool.get().await?;
        let tx = client.transaction().await?;
        let rotation = sessions::rotate(&tx, claims.sid, claims.jti, role).await?;
        tx.commit().await?;
        match rotation {
            Rotation::Rotated { session, new_jti } => {
                // The standing just read applies at once to the session's other tokens here.
                self.state.liveness.remember(session.id, Some(session.role));
                Ok(Json(self.pair(&session, new_jti)?))
            }
            Rotation::ReuseDetected => {
                self.state.liveness.revoked(claims.sid);
                tracing::warn!(sid = %claims.sid, user = %claims.sub, "refresh token reuse: session revoked");
                metrics::counter!("bff_refresh_reuse_total").increment(1);
                Err(ApiError::Unauthorized(Json(ErrorBody::new(
                    "Unauthorized",
                    "This refresh token was already used; the session has been revoked.",
                ))))
            }
            Rotation::Invalid => Err(ApiError::unauthorized()),
        }
    }

    /// End the session of the bearer access token.
    ///
    /// The body is optional: `{"refresh_token": "..."}` also ends that token's session
    /// (when it is the caller's). The refresh token stops at once, access tokens within
    /// 5 seconds.
    #[oai(path = "/api/v1/auth/logout", method = "post")]
    async fn logout(&self, auth: BearerAuth, body: poem::Body) -> Result<LogoutResponse, ApiError> {
        let claims = authenticate(&self.state, &auth).await?;
        let mut sids = vec![claims.sid];
        // An absent or unreadable body is the common case and simply means "no extra token".
        let extra = body
            .into_bytes_limit(platform::body_limit::MAX_BODY_BYTES)
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice::<LogoutRequest>(&bytes).ok())
            .and_then(|request| request.refresh_token);
        if let Some(token) = extra {
            // Only the caller's own sessions; a foreign or bad token is simply ignored.
            if let Ok(refresh) = self.state.keys.verify(&token, TokenType::Refresh) {
                if refresh.sub == claims.sub && refresh.sid != claims.sid {
                    sids.push(refresh.sid);
                }
            }
        }
        let client = self.state.pool.get().await?;
        for sid in sids {
            sessions::revoke(&client, sid, "logout").await?;
            self.state.liveness.revoked(sid);
        }
        Ok(LogoutResponse::LoggedOut)
    }
}
