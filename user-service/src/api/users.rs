//! Registration, credential checks and look-up.

use platform::error::{ErrorBody, Failure, Found};
use platform::internal_key::{Caller, InternalKey};
use platform::wire::{
    AccountErasure, Credentials, Erasure, PasswordChange, ProfileUpdate, RegisterResponse,
    Registration, User, Verification,
};
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, OpenApi};
use std::time::Instant;
use uuid::Uuid;

use super::Tag;
use crate::profile::UpdateError;
use crate::register::{register, RegisterError};
use crate::state::AppState;
use crate::users;
use crate::validation;

/// The answer of a credential check.
#[derive(Debug, ApiResponse)]
pub enum VerifyResponse {
    /// The verdict.
    #[oai(status = 200)]
    Checked(Json<Verification>),
    /// Too many failed checks of this email lately: retry after the given seconds.
    #[oai(status = 429)]
    Throttled(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
}

#[derive(Debug)]
pub struct UsersApi {
    pub state: AppState,
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Users")]
impl UsersApi {
    /// Registers a user and writes its `UserRegistered` event in one transaction.
    #[oai(path = "/register", method = "post")]
    async fn register(
        &self,
        key: InternalKey,
        /// W3C trace context, stored with the event and carried to Kafka.
        traceparent: Header<Option<String>>,
        body: Json<Registration>,
    ) -> Result<RegisterResponse, Failure> {
        key.permit(&[Caller::Bff])?;
        let new_user = match validation::validate(&body.0) {
            Ok(user) => user,
            Err(errors) => {
                return Ok(RegisterResponse::Invalid(Json(validation::invalid_fields(
                    &errors,
                ))));
            }
        };
        let hash = self.state.hasher.hash(body.0.password).await?;
        let mut client = self.state.pool.get().await?;
        let traceparent = traceparent.0;
        let topic = &self.state.settings.events_topic;
        match register(&mut client, &new_user, &hash, topic, traceparent).await {
            Ok(registered) => {
                metrics::counter!("users_registered_total").increment(1);
                tracing::info!(user_id = %registered.user.id, event_id = %registered.event_id, "user registered");
                Ok(RegisterResponse::Created(Json(registered.user)))
            }
            Err(RegisterError::Taken(taken)) => {
                metrics::counter!("register_conflicts_total", "field" => taken.field())
                    .increment(1);
                Ok(RegisterResponse::Conflict(Json(
                    ErrorBody::new(
                        "Conflict",
                        format!("This {} is already registered.", taken.field()),
                    )
                    .with_details(serde_json::json!({ "field": taken.field() })),
                )))
            }
            Err(RegisterError::Database(error)) => Err(error.into()),
        }
    }

    /// Checks an email and password: whether the password is right; unknown emails cost
    /// the same work as wrong ones.
    ///
    /// Throttled per email, known or not: after 5 failures in 15 minutes each further
    /// check must wait a doubling delay (1 s, 2 s, ... at most 15 minutes), and one made
    /// sooner is answered 429 with `Retry-After`, without checking the password. A success
    /// resets the count; a client that passed the check recently is never made to wait.
    #[oai(path = "/verify-credentials", method = "post")]
    async fn verify_credentials(
        &self,
        key: InternalKey,
        /// The end client's address as the caller saw it; lets an account's recent good
        /// clients through a throttle.
        #[oai(name = "X-Client-Ip")]
        client: Header<Option<String>>,
        body: Json<Credentials>,
    ) -> Result<VerifyResponse, Failure> {
        key.permit(&[Caller::Bff])?;
        let throttle = &self.state.throttle;
        let client = client.0.as_deref();
        if let Err(wait) = throttle.check(&body.0.email, client, Instant::now()) {
            metrics::counter!("login_throttled_total").increment(1);
            return Ok(VerifyResponse::Throttled(
                Json(ErrorBody::new(
                    "Too many requests",
                    "Too many failed attempts for this account. Please try again later.",
                )),
                wait.as_secs_f64().ceil() as u64,
            ));
        }
        let credentials = {
            let client = self.state.pool.get().await?;
            users::find_credentials(&client, &body.0.email).await?
        };
        let stored = credentials.as_ref().map(|c| c.password_hash.clone());
        let valid = self.state.hasher.verify(body.0.password, stored).await?;
        let verification = match credentials {
            Some(c) if valid => Verification {
                valid: true,
                user_id: Some(c.id),
                role: Some(c.role),
                is_active: Some(c.is_active),
            },
            _ => Verification::invalid(),
        };
        if verification.valid {
            throttle.succeeded(&body.0.email, client);
        } else {
            throttle.failed(&body.0.email, Instant::now());
        }
        Ok(VerifyResponse::Checked(Json(verification)))
    }

    /// Looks a user up by id.
    #[oai(path = "/users/:id", method = "get")]
    async fn get_user(&self, key: InternalKey, id: Path<Uuid>) -> Result<Found<User>, Failure> {
        key.permit(&[Caller::Bff, Caller::EventConsumer, Caller::Ops])?;
        let client = self.state.pool.get().await?;
        let user = users::find_by_id(&client, id.0).await?;
        Ok(Found::or_not_found(user, "No user has this id."))
    }

    /// Changes the user's names and phone (any subset; the registration's rules; `phone:
    /// null` removes it) and writes `UserProfileUpdated` with the changed fields, in one
    /// transaction. With `If-Match` (the profile's ETag), a stale version gets 412. A
    /// change that changes nothing writes no event.
    #[oai(path = "/users/:id", method = "patch")]
    async fn update_profile(
        &self,
        key: InternalKey,
        id: Path<Uuid>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        /// W3C trace context, stored with the event.
        traceparent: Header<Option<String>>,
        body: Json<ProfileUpdate>,
    ) -> Result<ProfileUpdated, Failure> {
        key.permit(&[Caller::Bff])?;
        let phone = match &body.0.phone {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(phone) => Some(Some(phone.as_str())),
        };
        let change = match validation::validate_profile(
            body.0.first_name.as_deref(),
            body.0.last_name.as_deref(),
            phone,
        ) {
            Ok(change) => change,
            Err(errors) => {
                return Ok(ProfileUpdated::Invalid(Json(validation::invalid_fields(
                    &errors,
                ))));
            }
        };
        let expected = if_match.0.as_deref().and_then(crate::profile::if_match);
        let traceparent = traceparent.0;
        let mut client = self.state.pool.get().await?;
        let topic = &self.state.settings.events_topic;
        match crate::profile::update(&mut client, id.0, &change, expected, topic, traceparent).await
        {
            Ok(updated) => {
                if updated.changed {
                    tracing::info!(user_id = %id.0, version = updated.user.version, "profile updated");
                }
                let etag = crate::profile::etag(updated.user.version);
                Ok(ProfileUpdated::Ok(Json(updated.user), etag))
            }
            Err(UpdateError::NotFound) => Ok(ProfileUpdated::NotFound(Json(ErrorBody::new(
                "Not found",
                "No user has this id.",
            )))),
            Err(UpdateError::Stale { current }) => Ok(ProfileUpdated::Stale(
                Json(ErrorBody::new(
                    "Precondition failed",
                    "The profile changed since you read it: read it again and retry.",
                )),
                crate::profile::etag(current),
            )),
            Err(UpdateError::Taken(taken)) => Ok(ProfileUpdated::Conflict(Json(
                ErrorBody::new(
                    "Conflict",
                    format!("This {} is already registered.", taken.field()),
                )
                .with_details(serde_json::json!({ "field": taken.field() })),
            ))),
            Err(UpdateError::Database(error)) => Err(error.into()),
        }
    }

    /// Changes the user's password: the current one must be right (403 otherwise), the
    /// new one follows the registration's rules (422). The new hash and
    /// `UserPasswordChanged` (no secret in it) commit together. The caller (the BFF)
    /// revokes the user's other sessions.
    #[oai(path = "/users/:id/password", method = "post")]
    async fn change_password(
        &self,
        key: InternalKey,
        id: Path<Uuid>,
        /// W3C trace context, stored with the event.
        traceparent: Header<Option<String>>,
        body: Json<PasswordChange>,
    ) -> Result<PasswordChanged, Failure> {
        key.permit(&[Caller::Bff])?;
        let account = {
            let client = self.state.pool.get().await?;
            crate::password_change::account(&client, id.0).await?
        };
        let Some(account) = account else {
            return Ok(PasswordChanged::NotFound(Json(ErrorBody::new(
                "Not found",
                "No user has this id.",
            ))));
        };
        let PasswordChange {
            current_password,
            new_password,
        } = body.0;
        let inputs = [
            account.email.as_str(),
            account.first_name.as_str(),
            account.last_name.as_str(),
        ];
        if let Some(problem) = validation::new_password_problem(&new_password, &inputs) {
            let body = validation::invalid_fields(&[problem]);
            return Ok(PasswordChanged::Invalid(Json(body)));
        }
        let right = self
            .state
            .hasher
            .verify(current_password, Some(account.password_hash.clone()))
            .await?;
        if !right {
            return Ok(PasswordChanged::WrongPassword(Json(ErrorBody::new(
                "Forbidden",
                "The current password is wrong.",
            ))));
        }
        let new_hash = self.state.hasher.hash(new_password).await?;
        let traceparent = traceparent.0;
        let mut client = self.state.pool.get().await?;
        let topic = &self.state.settings.events_topic;
        let stored = crate::password_change::store(
            &mut client,
            id.0,
            &account.password_hash,
            &new_hash,
            topic,
            traceparent,
        )
        .await?;
        match stored {
            Some(version) => {
                tracing::info!(user_id = %id.0, version, "password changed");
                Ok(PasswordChanged::Changed(Json(PasswordVersion { version })))
            }
            // Another change of the password won the race since it was checked.
            None => Ok(PasswordChanged::WrongPassword(Json(ErrorBody::new(
                "Forbidden",
                "The current password is wrong.",
            )))),
        }
    }

    /// Erases the user, confirmed by its password: personal data leaves the user row (a
    /// tombstone keeps the id, role and version) and every earlier outbox row, and
    /// `UserErased` is written, in one transaction. The caller (the BFF) ends the
    /// user's sessions.
    #[oai(path = "/users/:id/erase", method = "post")]
    async fn erase(
        &self,
        key: InternalKey,
        id: Path<Uuid>,
        /// W3C trace context, stored with the event.
        traceparent: Header<Option<String>>,
        body: Json<AccountErasure>,
    ) -> Result<AccountErased, Failure> {
        key.permit(&[Caller::Bff])?;
        let not_found =
            || AccountErased::NotFound(Json(ErrorBody::new("Not found", "No user has this id.")));
        let wrong = || {
            AccountErased::WrongPassword(Json(ErrorBody::new(
                "Forbidden",
                "The password is wrong.",
            )))
        };
        let account = {
            let client = self.state.pool.get().await?;
            crate::password_change::account(&client, id.0).await?
        };
        let Some(account) = account else {
            return Ok(not_found());
        };
        let right = self
            .state
            .hasher
            .verify(body.0.password, Some(account.password_hash.clone()))
            .await?;
        if !right {
            return Ok(wrong());
        }
        let mut client = self.state.pool.get().await?;
        let topic = &self.state.settings.events_topic;
        let erased = crate::erasure::erase(
            &mut client,
            id.0,
            Some(&account.password_hash),
            topic,
            traceparent.0,
        )
        .await?;
        match erased {
            Some(erased) => {
                tracing::info!(
                    user_id = %id.0,
                    version = erased.version,
                    scrubbed_outbox_rows = erased.scrubbed,
                    "user erased"
                );
                Ok(AccountErased::Erased(Json(Erasure {
                    user_id: id.0,
                    version: erased.version,
                })))
            }
            // The password changed, or the user was erased, since it was checked.
            None => Ok(wrong()),
        }
    }
}

#[derive(Debug, ApiResponse)]
pub enum AccountErased {
    /// Erased: the user row is a tombstone, the outbox rows are scrubbed and `UserErased`
    /// is enqueued.
    #[oai(status = 200)]
    Erased(Json<Erasure>),
    /// The password is wrong.
    #[oai(status = 403)]
    WrongPassword(Json<ErrorBody>),
    /// No user has this id (or it is erased already).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

#[derive(Debug, ApiResponse)]
pub enum ProfileUpdated {
    /// The profile after the change; `ETag` is its version.
    #[oai(status = 200)]
    Ok(Json<User>, #[oai(header = "ETag")] String),
    /// No user has this id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The phone belongs to another user.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// `If-Match` names another version than the current one (its `ETag`).
    #[oai(status = 412)]
    Stale(Json<ErrorBody>, #[oai(header = "ETag")] String),
    /// A field breaks the registration's rules (`details` lists each).
    #[oai(status = 422)]
    Invalid(Json<ErrorBody>),
}

/// The user's version after a password change.
#[derive(Debug, Clone, poem_openapi::Object, serde::Serialize, serde::Deserialize)]
pub struct PasswordVersion {
    pub version: i64,
}

#[derive(Debug, ApiResponse)]
pub enum PasswordChanged {
    /// Changed; the user's new version.
    #[oai(status = 200)]
    Changed(Json<PasswordVersion>),
    /// The current password is wrong.
    #[oai(status = 403)]
    WrongPassword(Json<ErrorBody>),
    /// No user has this id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The new password breaks the registration's rules.
    #[oai(status = 422)]
    Invalid(Json<ErrorBody>),
}
