//! Registration, credential checks and look-up.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::auth::InternalKey;
use super::health::Tag;
use crate::error::ErrorBody;
use crate::register::{register, RegisterError};
use crate::state::{AppState, Failure};
use crate::users;
use crate::validation::{self, Registration};

#[derive(Debug, Object)]
pub struct RegisterRequest {
    /// Checked for syntax; unique case-insensitively.
    pub email: String,
    /// 8 to 128 characters, any Unicode; very common passwords are refused.
    pub password: String,
    /// 1 to 100 characters.
    pub first_name: String,
    /// 1 to 100 characters.
    pub last_name: String,
    /// 7 to 20 digits with an optional leading `+`; unique.
    pub phone: Option<String>,
}

/// A user as other services see it: never any password field.
#[derive(Debug, Clone, Object)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub phone: Option<String>,
    pub first_name: String,
    pub last_name: String,
    /// `user` or `admin`.
    pub role: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

impl From<users::User> for User {
    fn from(user: users::User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            phone: user.phone,
            first_name: user.first_name,
            last_name: user.last_name,
            role: user.role,
            is_active: user.is_active,
            created_at: user.created_at,
        }
    }
}

#[derive(Debug, ApiResponse)]
pub enum RegisterResponse {
    /// Registered; its `UserRegistered` event was written in the same transaction.
    #[oai(status = 201)]
    Created(Json<User>),
    /// The email (case-insensitively) or the phone is taken; `details.field` says which.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Invalid fields, all listed in `details` as `{field, message}`.
    #[oai(status = 422)]
    Invalid(Json<ErrorBody>),
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The database is unavailable; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}
failure_responses!(RegisterResponse);

#[derive(Debug, Object)]
pub struct VerifyRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Object)]
pub struct Verification {
    pub valid: bool,
    /// Only when valid.
    #[oai(skip_serializing_if_is_none)]
    pub user_id: Option<Uuid>,
    /// Only when valid.
    #[oai(skip_serializing_if_is_none)]
    pub role: Option<String>,
    /// Only when valid: the caller decides what an inactive account may do.
    #[oai(skip_serializing_if_is_none)]
    pub is_active: Option<bool>,
}

#[derive(Debug, ApiResponse)]
pub enum VerifyResponse {
    /// Whether the password is right; unknown emails cost the same work as wrong ones.
    #[oai(status = 200)]
    Ok(Json<Verification>),
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}
failure_responses!(VerifyResponse);

#[derive(Debug, ApiResponse)]
pub enum GetUserResponse {
    #[oai(status = 200)]
    Ok(Json<User>),
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}
failure_responses!(GetUserResponse);

#[derive(Debug)]
pub struct UsersApi;

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Users")]
impl UsersApi {
    /// Registers a user and writes its `UserRegistered` event in one transaction.
    #[oai(path = "/register", method = "post")]
    async fn register(
        &self,
        _key: InternalKey,
        state: Data<&AppState>,
        /// W3C trace context, stored with the event and carried to Kafka.
        traceparent: Header<Option<String>>,
        body: Json<RegisterRequest>,
    ) -> RegisterResponse {
        do_register(&state, traceparent.0.as_deref(), body.0)
            .await
            .unwrap_or_else(Into::into)
    }

    /// Checks an email and password.
    #[oai(path = "/verify-credentials", method = "post")]
    async fn verify_credentials(
        &self,
        _key: InternalKey,
        state: Data<&AppState>,
        body: Json<VerifyRequest>,
    ) -> VerifyResponse {
        do_verify(&state, body.0).await.unwrap_or_else(Into::into)
    }

    /// Looks a user up by id.
    #[oai(path = "/users/:id", method = "get")]
    async fn get_user(
        &self,
        _key: InternalKey,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> GetUserResponse {
        do_get_user(&state, id.0).await.unwrap_or_else(Into::into)
    }
}

async fn do_register(
    state: &AppState,
    traceparent: Option<&str>,
    body: RegisterRequest,
) -> Result<RegisterResponse, Failure> {
    let input = Registration {
        email: body.email,
        password: body.password,
        first_name: body.first_name,
        last_name: body.last_name,
        phone: body.phone,
    };
    let new_user = match validation::validate(&input) {
        Ok(user) => user,
        Err(errors) => {
            let details = serde_json::to_value(&errors).unwrap_or_default();
            return Ok(RegisterResponse::Invalid(Json(
                ErrorBody::new("Validation failed", "One or more fields are invalid.")
                    .with_details(details),
            )));
        }
    };
    let hash = state.hasher.hash(input.password).await?;
    let mut client = state.pool.get().await?;
    let traceparent = traceparent
        .and_then(platform::traceparent::TraceParent::parse)
        .map(|t| t.to_string());
    match register(
        &mut client,
        &new_user,
        &hash,
        &state.settings.events_topic,
        traceparent,
    )
    .await
    {
        Ok(registered) => {
            metrics::counter!("users_registered_total").increment(1);
            tracing::info!(user_id = %registered.user.id, event_id = %registered.event_id, "user registered");
            Ok(RegisterResponse::Created(Json(registered.user.into())))
        }
        Err(RegisterError::Taken(taken)) => {
            metrics::counter!("register_conflicts_total", "field" => taken.field()).increment(1);
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

async fn do_verify(state: &AppState, body: VerifyRequest) -> Result<VerifyResponse, Failure> {
    let credentials = {
        let client = state.pool.get().await?;
        users::find_credentials(&client, &body.email).await?
    };
    let stored = credentials.as_ref().map(|c| c.password_hash.clone());
    let valid = state.hasher.verify(body.password, stored).await?;
    let verification = match credentials {
        Some(c) if valid => Verification {
            valid: true,
            user_id: Some(c.id),
            role: Some(c.role),
            is_active: Some(c.is_active),
        },
        _ => Verification {
            valid: false,
            user_id: None,
            role: None,
            is_active: None,
        },
    };
    Ok(VerifyResponse::Ok(Json(verification)))
}

async fn do_get_user(state: &AppState, id: Uuid) -> Result<GetUserResponse, Failure> {
    let client = state.pool.get().await?;
    Ok(match users::find_by_id(&client, id).await? {
        Some(user) => GetUserResponse::Ok(Json(user.into())),
        None => {
            GetUserResponse::NotFound(Json(ErrorBody::new("Not found", "No user has this id.")))
        }
    })
}
