//! Registration (forwarded to the user service, with `Idempotency-Key` support) and the
//! signed-in user's own profile.

use std::sync::Arc;

use platform::telemetry::error_chain;
use poem_openapi::param::Header;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::auth::{authenticate, BearerAuth};
use super::errors::ApiError;
use super::models::{ErrorBody, RegisterResponse, Registration, User};
use super::Tag;
use crate::idempotency::{self, Claim, Scoped, MAX_KEY_LEN};
use crate::rate_limit::ClientIp;
use crate::state::AppState;
use crate::upstream::Answer;
use platform::wire::{AccountErasure, PasswordChange, ProfileUpdate};

/// An answer as the idempotency record keeps it: status and JSON body.
fn into_stored(answer: RegisterResponse) -> (u16, serde_json::Value) {
    let (status, body) = match answer {
        RegisterResponse::Created(user) => (201, serde_json::to_value(&user.0)),
        RegisterResponse::Conflict(error) => (409, serde_json::to_value(&error.0)),
        RegisterResponse::Invalid(error) => (422, serde_json::to_value(&error.0)),
    };
    (status, body.unwrap_or_default())
}

fn from_stored(status: u16, body: serde_json::Value) -> Result<RegisterResponse, ApiError> {
    let decode_error = |body| serde_json::from_value::<ErrorBody>(body);
    let decoded = match status {
        201 => serde_json::from_value::<User>(body).map(|u| RegisterResponse::Created(Json(u))),
        409 => decode_error(body).map(|e| RegisterResponse::Conflict(Json(e))),
        _ => decode_error(body).map(|e| RegisterResponse::Invalid(Json(e))),
    };
    decoded.map_err(|error| ApiError::internal(&error))
}

#[derive(Debug)]
pub struct UsersApi {
    pub state: Arc<AppState>,
}

impl UsersApi {
    async fn forward(&self, body: &Registration) -> Result<RegisterResponse, ApiError> {
        let answer = self.state.upstream.register(body).await?;
        match answer {
            Answer::Ok(user) => {
                metrics::counter!("bff_registrations_total").increment(1);
                Ok(RegisterResponse::Created(Json(user)))
            }
            Answer::Refused(status, error) => match status.as_u16() {
                409 => Ok(RegisterResponse::Conflict(Json(error))),
                422 => Ok(RegisterResponse::Invalid(Json(error))),
                413 => Err(ApiError::PayloadTooLarge(Json(error))),
                _ => Err(ApiError::BadRequest(Json(error))),
            },
        }
    }
}

#[OpenApi(tag = "Tag::Users")]
impl UsersApi {
    /// Register a new user.
    ///
    /// With an `Idempotency-Key`, a retry with the same key and body within 24 hours
    /// gets the first answer again and creates no second user.
    #[oai(path = "/api/v1/register", method = "post")]
    async fn register(
        &self,
        request: &poem::Request,
        body: Json<Registration>,
        /// Any unique string (a UUID is good), at most 255 characters. Keys are per
        /// client: the same key sent from another address is another request.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
    ) -> Result<RegisterResponse, ApiError> {
        let Some(key) = idempotency_key.0.filter(|k| !k.trim().is_empty()) else {
            return self.forward(&body.0).await;
        };
        if key.len() > MAX_KEY_LEN {
            return Err(ApiError::bad_request(
                "Idempotency-Key is longer than 255 characters.",
            ));
        }
        let who = request
            .extensions()
            .get::<ClientIp>()
            .map(|ip| ip.0.to_string())
            .unwrap_or_default();
        let key = Scoped {
            client: &who,
            key: &key,
        };
        let canonical = serde_json::to_vec(&body.0).unwrap_or_default();
        let hash = idempotency::fingerprint(&self.state.fingerprint_key, &canonical);
        // A connection for each step, none held across the upstream call.
        let claim = idempotency::begin(&self.state.pool.get().await?, key, &hash).await?;
        match claim {
            Claim::Replay { status, body } => from_stored(status, body),
            Claim::Mismatch => Ok(RegisterResponse::Invalid(Json(ErrorBody::new(
                "Idempotency key reused",
                "This Idempotency-Key was used with a different request body.",
            )))),
            Claim::InProgress => Ok(RegisterResponse::Conflict(Json(ErrorBody::new(
                "Request in progress",
                "A request with this Idempotency-Key is still being processed.",
            )))),
            Claim::Fresh => match self.forward(&body.0).await {
                Ok(answer) => {
                    let (status, stored) = into_stored(answer);
                    let client = self.state.pool.get().await?;
                    idempotency::finish(&client, key, status, &stored).await?;
                    from_stored(status, stored)
                }
                Err(error) => {
                    // Nothing was decided: let a retry with the same key run again.
                    let released = match self.state.pool.get().await {
                        Ok(client) => idempotency::abandon(&client, key)
                            .await
                            .map_err(|e| error_chain(&e)),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(db) = released {
                        tracing::warn!(error = %db, "releasing an idempotency key failed");
                    }
                    Err(error)
                }
            },
        }
    }

    /// The signed-in user's profile; `ETag` is its version, for `PATCH`'s `If-Match`.
    #[oai(path = "/api/v1/protected/profile", method = "get")]
    async fn profile(&self, auth: BearerAuth) -> Result<Profile, ApiError> {
        let claims = authenticate(&self.state, &auth).await?;
        // No older than the revocation window (a change made through this BFF shows at
        // once).
        let user = match self.state.profiles.get(claims.sub) {
            Some(user) => Some(User::clone(&user)),
            None => {
                let user = self.state.upstream.user(claims.sub).await?;
                if let Some(user) = &user {
                    self.state.profiles.remember(user);
                }
                user
            }
        };
        Ok(match user {
            Some(user) => {
                let etag = format!("\"{}\"", user.version);
                Profile::Ok(Json(user), etag)
            }
            None => Profile::NotFound(Json(ErrorBody::new(
                "Not found",
                "This user no longer exists.",
            ))),
        })
    }

    /// Changes the signed-in user's password: `current_password` must be right (403), and
    /// `new_password` follows the registration's rules (422). Every other session of the
    /// user is revoked (their refresh tokens at once, their access tokens within 5 s);
    /// this one stays.
    #[oai(path = "/api/v1/protected/password", method = "post")]
    async fn change_password(
        &self,
        auth: BearerAuth,
        body: Json<PasswordChange>,
    ) -> Result<PasswordChanged, ApiError> {
        let claims = authenticate(&self.state, &auth).await?;
        let answer = self
            .state
            .upstream
            .change_password(claims.sub, &body.0)
            .await?;
        match answer {
            Answer::Ok(_) => {
                // The password's change moved the user's version.
                self.state.profiles.forget(claims.sub);
                let client = self.state.pool.get().await?;
                let revoked = crate::sessions::revoke_others(
                    &client,
                    claims.sub,
                    claims.sid,
                    "password changed",
                )
                .await?;
                tracing::info!(user_id = %claims.sub, revoked, "password changed; other sessions revoked");
                Ok(PasswordChanged::Changed)
            }
            Answer::Refused(status, error) => Ok(match status.as_u16() {
                403 => PasswordChanged::WrongPassword(Json(error)),
                404 => return Err(ApiError::unauthorized()),
                400 => return Err(ApiError::BadRequest(Json(error))),
                _ => PasswordChanged::Invalid(Json(error)),
            }),
        }
    }

    /// Erases the signed-in user, confirmed with `password`: the user's personal data
    /// leaves every service (user-service keeps a tombstone with the id; the outbox rows
    /// lose their personal data; the consumer's read model and effect tables lose it when
    /// `UserErased` is applied), every session and stored registration answer of the user
    /// goes, and every token of the user is refused from now on. The email may be
    /// registered again. Records already in Kafka stay until the topic's retention.
    #[oai(path = "/api/v1/protected/account", method = "delete")]
    async fn erase_account(
        &self,
        auth: BearerAuth,
        body: Json<AccountErasure>,
    ) -> Result<AccountErased, ApiError> {
        let claims = authenticate(&self.state, &auth).await?;
        match self.state.upstream.erase(claims.sub, &body.0).await? {
            Answer::Ok(erased) => {
                self.state.profiles.forget(claims.sub);
                let mut client = self.state.pool.get().await?;
                let sessions = crate::sessions::forget_user(&mut client, claims.sub).await?;
                for sid in &sessions {
                    self.state.liveness.revoked(*sid);
                }
                tracing::info!(
                    user_id = %claims.sub,
                    version = erased.version,
                    sessions = sessions.len(),
                    "account erased; sessions deleted"
                );
                Ok(AccountErased::Erased)
            }
            Answer::Refused(status, error) => Ok(match status.as_u16() {
                403 => AccountErased::WrongPassword(Json(error)),
                400 => return Err(ApiError::BadRequest(Json(error))),
                _ => return Err(ApiError::unauthorized()),
            }),
        }
    }

    /// Changes the signed-in user's `first_name`, `last_name` and `phone` (any subset,
    /// the registration's rules; `"phone": null` removes it). Send the profile's `ETag`
    /// as `If-Match` to change only what you read: a stale one gets 412 with the current
    /// `ETag`. A phone another user has is 409. Answers the new profile and its `ETag`.
    #[oai(path = "/api/v1/protected/profile", method = "patch")]
    async fn update_profile(
        &self,
        auth: BearerAuth,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: Json<ProfileUpdate>,
    ) -> Result<ProfilePatched, ApiError> {
        let claims = authenticate(&self.state, &auth).await?;
        let (answer, etag) = self
            .state
            .upstream
            .update_profile(claims.sub, &body.0, if_match.0.as_deref())
            .await?;
        Ok(match answer {
            Answer::Ok(user) => {
                self.state.profiles.changed(&user);
                let etag = etag.unwrap_or_else(|| format!("\"{}\"", user.version));
                ProfilePatched::Ok(Json(user), etag)
            }
            Answer::Refused(status, error) => match status.as_u16() {
                409 => ProfilePatched::Conflict(Json(error)),
                412 => {
                    // Changed elsewhere: the remembered profile is behind too.
                    self.state.profiles.forget(claims.sub);
                    ProfilePatched::Stale(Json(error), etag.unwrap_or_default())
                }
                404 => ProfilePatched::NotFound(Json(error)),
                400 => return Err(ApiError::BadRequest(Json(error))),
                _ => ProfilePatched::Invalid(Json(error)),
            },
        })
    }
}

#[derive(Debug, ApiResponse)]
pub enum Profile {
    /// The profile; `ETag` is its version.
    #[oai(status = 200)]
    Ok(Json<User>, #[oai(header = "ETag")] String),
    /// The user no longer exists.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

#[derive(Debug, ApiResponse)]
pub enum ProfilePatched {
    /// The profile after the change; `ETag` is its new version.
    #[oai(status = 200)]
    Ok(Json<User>, #[oai(header = "ETag")] String),
    /// The user no longer exists.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The phone belongs to another user.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// `If-Match` is not the current version (sent back as `ETag`): read the profile
    /// again and retry.
    #[oai(status = 412)]
    Stale(Json<ErrorBody>, #[oai(header = "ETag")] String),
    /// A field breaks the registration's rules (`details` lists each).
    #[oai(status = 422)]
    Invalid(Json<ErrorBody>),
}

#[derive(Debug, ApiResponse)]
pub enum AccountErased {
    /// Erased; every session of the user is gone.
    #[oai(status = 204)]
    Erased,
    /// The password is wrong; nothing changed.
    #[oai(status = 403)]
    WrongPassword(Json<ErrorBody>),
}

#[derive(Debug, ApiResponse)]
pub enum PasswordChanged {
    /// Changed; the user's other sessions are revoked.
    #[oai(status = 204)]
    Changed,
    /// The current password is wrong.
    #[oai(status = 403)]
    WrongPassword(Json<ErrorBody>),
    /// The new password breaks the registration's rules.
    #[oai(status = 422)]
    Invalid(Json<ErrorBody>),
}
