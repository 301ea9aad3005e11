//! HTTP clients for the internal services, with the internal key, the caller's
//! `traceparent`, and a deadline so that an upstream that is down or slow becomes a prompt
//! 503 instead of a hung request.

use std::time::Duration;

use std::net::IpAddr;

use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use platform::error::ErrorBody;
use platform::traceparent::TraceParent;
use platform::wire::{
    Credentials, DeadLetterDetail, DeadLetterFilter, DeadLetterList, EventStats, PasswordChange,
    ProfileUpdate, RedriveReport, RedriveRequest, Registration, ReplayRequest, ReplayResult,
    StatusChange, User, UserStats, Verification,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{service} unreachable or too slow")]
    Unavailable {
        service: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{service} answered {status}")]
    Status {
        service: &'static str,
        status: StatusCode,
    },
    #[error("the event consumer's URL cannot take a path or query")]
    BadBase,
    #[error("{service} answered a body that does not match the contract")]
    Contract {
        service: &'static str,
        #[source]
        source: reqwest::Error,
    },
}

impl Error {
    /// Whether the service is away or overloaded (worth retrying), rather than broken.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable { .. } => true,
            Self::Status { status, .. } => *status == StatusCode::SERVICE_UNAVAILABLE,
            Self::Contract { .. } | Self::BadBase => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The verdict of a credential check, or how long the account's throttle still holds.
#[derive(Debug)]
pub enum Checked {
    Verdict(Verification),
    Throttled { retry_after: u64 },
}

/// An upstream answer the BFF passes on: a success or the service's error body.
#[derive(Debug)]
pub enum Answer<T> {
    Ok(T),
    Refused(StatusCode, ErrorBody),
}

const USER_SERVICE: &str = "user-service";
const EVENT_CONSUMER: &str = "event-consumer";

#[derive(Debug, Clone)]
pub struct Upstream {
    http: reqwest::Client,
    user_service: String,
    event_consumer: String,
    user_service_key: SecretString,
    event_consumer_key: SecretString,
}

impl Upstream {
    pub fn new(
        user_service: &str,
        event_consumer: &str,
        user_service_key: SecretString,
        event_consumer_key: SecretString,
        timeout: Duration,
    ) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            user_service: user_service.trim_end_matches('/').to_owned(),
            event_consumer: event_consumer.trim_end_matches('/').to_owned(),
            user_service_key,
            event_consumer_key,
        })
    }

    /// A request to `service` with its key and the caller's trace.
    fn request(&self, service: &'static str, method: Method, url: String) -> RequestBuilder {
        let key = if service == EVENT_CONSUMER {
            &self.event_consumer_key
        } else {
            &self.user_service_key
        };
        let request = self
            .http
            .request(method, url)
            .bearer_auth(key.expose_secret());
        match TraceParent::current() {
            Some(trace) => request.header("traceparent", trace.as_str()),
            None => request,
        }
    }

    async fn send(
        &self,
        service: &'static str,
        method: Method,
        url: String,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<reqwest::Response> {
        let mut request = self.request(service, method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        Self::sent(service, request).await
    }

    /// Sends `request`; a server error is an [`Error::Status`].
    async fn sent(service: &'static str, request: RequestBuilder) -> Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .map_err(|source| Error::Unavailable { service, source })?;
        if response.status().is_server_error() {
            return Err(Error::Status {
                service,
                status: response.status(),
            });
        }
        Ok(response)
    }

    async fn decode<T: DeserializeOwned>(
        service: &'static str,
        response: reqwest::Response,
    ) -> Result<T> {
        response
            .json()
            .await
            .map_err(|source| Error::Contract { service, source })
    }

    /// A success body of type `T` on a 2xx; the error body on an expected refusal.
    async fn answer<T: DeserializeOwned>(
        service: &'static str,
        response: reqwest::Response,
        refusals: &[StatusCode],
    ) -> Result<Answer<T>> {
        let status = response.status();
        if status.is_success() {
            return Ok(Answer::Ok(Self::decode(service, response).await?));
        }
        if refusals.contains(&status) {
            let body = Self::decode::<ErrorBody>(service, response).await?;
            return Ok(Answer::Refused(status, body));
        }
        Err(Error::Status { service, status })
    }

    pub async fn register(&self, body: &Registration) -> Result<Answer<User>> {
        let url = format!("{}/api/v1/register", self.user_service);
        let response = self
            .send(USER_SERVICE, Method::POST, url, Some(body))
            .await?;
        let refusals = [
            StatusCode::BAD_REQUEST,
            StatusCode::CONFLICT,
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::PAYLOAD_TOO_LARGE,
        ];
        Self::answer(USER_SERVICE, response, &refusals).await
    }

    /// Checks credentials; `client` is the end client's address (good clients of an
    /// account pass its throttle).
    pub async fn verify_credentials(
        &self,
        credentials: &Credentials,
        client: Option<IpAddr>,
    ) -> Result<Checked> {
        let url = format!("{}/api/v1/verify-credentials", self.user_service);
        let mut request = self
            .request(USER_SERVICE, Method::POST, url)
            .json(credentials);
        if let Some(client) = client {
            request = request.header("X-Client-Ip", client.to_string());
        }
        let response = Self::sent(USER_SERVICE, request).await?;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok()?.parse().ok())
                .unwrap_or(1);
            return Ok(Checked::Throttled { retry_after });
        }
        match Self::answer::<Verification>(
            USER_SERVICE,
            response,
            &[StatusCode::UNPROCESSABLE_ENTITY, StatusCode::BAD_REQUEST],
        )
        .await?
        {
            Answer::Ok(verification) => Ok(Checked::Verdict(verification)),
            // A malformed email or empty password cannot be valid credentials.
            Answer::Refused(..) => Ok(Checked::Verdict(Verification::invalid())),
        }
    }

    pub async fn user(&self, id: Uuid) -> Result<Option<User>> {
        let url = format!("{}/api/v1/users/{id}", self.user_service);
        let response = self
            .send(USER_SERVICE, Method::GET, url, None::<&()>)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        match Self::answer(USER_SERVICE, response, &[]).await? {
            Answer::Ok(user) => Ok(Some(user)),
            Answer::Refused(status, _) => Err(Error::Status {
                service: USER_SERVICE,
                status,
            }),
        }
    }

    pub async fn user_stats(&self) -> Result<UserStats> {
        let url = format!("{}/api/v1/admin/stats", self.user_service);
        self.get_ok(USER_SERVICE, url).await
    }

    pub async fn replay(&self, filter: &ReplayRequest) -> Result<Answer<ReplayResult>> {
        let url = format!("{}/api/v1/admin/outbox/replay", self.user_service);
        let response = self
            .send(USER_SERVICE, Method::POST, url, Some(filter))
            .await?;
        let refusals = [StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY];
        Self::answer(USER_SERVICE, response, &refusals).await
    }

    /// Changes the profile of the user `id` (with the caller's `If-Match`, if any). A
    /// refusal (404, 409, 412, 422) comes back with the user service's body and, for 412,
    /// the current `ETag`.
    pub async fn update_profile(
        &self,
        id: Uuid,
        change: &ProfileUpdate,
        if_match: Option<&str>,
    ) -> Result<(Answer<User>, Option<String>)> {
        let url = format!("{}/api/v1/users/{id}", self.user_service);
        let mut request = self.request(USER_SERVICE, Method::PATCH, url).json(change);
        if let Some(if_match) = if_match {
            request = request.header("If-Match", if_match);
        }
        let response = Self::sent(USER_SERVICE, request).await?;
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let refusals = [
            StatusCode::NOT_FOUND,
            StatusCode::CONFLICT,
            StatusCode::PRECONDITION_FAILED,
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::BAD_REQUEST,
        ];
        Ok((Self::answer(USER_SERVICE, response, &refusals).await?, etag))
    }

    /// Changes the password of the user `id`; a refusal (403 wrong current password, 404,
    /// 422) comes back with the user service's body.
    pub async fn change_password(
        &self,
        id: Uuid,
        change: &PasswordChange,
    ) -> Result<Answer<serde_json::Value>> {
        let url = format!("{}/api/v1/users/{id}/password", self.user_service);
        let response = self
            .send(USER_SERVICE, Method::POST, url, Some(change))
            .await?;
        let refusals = [
            StatusCode::FORBIDDEN,
            StatusCode::NOT_FOUND,
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::BAD_REQUEST,
        ];
        Self::answer(USER_SERVICE, response, &refusals).await
    }

    /// Erases the user `id`, confirmed by its password.
    pub async fn erase(
        &self,
        id: Uuid,
        confirmation: &platform::wire::AccountErasure,
    ) -> Result<Answer<platform::wire::Erasure>> {
        let url = format!("{}/api/v1/users/{id}/erase", self.user_service);
        let response = self
            .send(USER_SERVICE, Method::POST, url, Some(confirmation))
            .await?;
        let refusals = [
            StatusCode::FORBIDDEN,
            StatusCode::NOT_FOUND,
            StatusCode::BAD_REQUEST,
        ];
        Self::answer(USER_SERVICE, response, &refusals).await
    }

    /// Deactivates (`active` false) or reactivates the user `id`; `None` when there is no
    /// such user.
    pub async fn set_active(&self, id: Uuid, active: bool) -> Result<Option<StatusChange>> {
        let verb = if active { "reactivate" } else { "deactivate" };
        let url = format!("{}/api/v1/admin/users/{id}/{verb}", self.user_service);
        let response = self
            .send(USER_SERVICE, Method::POST, url, None::<&()>)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        match Self::answer(USER_SERVICE, response, &[]).await? {
            Answer::Ok(change) => Ok(Some(change)),
            Answer::Refused(status, _) => Err(Error::Status {
                service: USER_SERVICE,
                status,
            }),
        }
    }

    pub async fn event_stats(&self) -> Result<EventStats> {
        let url = format!("{}/stats", self.event_consumer);
        self.get_ok(EVENT_CONSUMER, url).await
    }

    /// Dead letters matching `filter`, at most `limit`.
    pub async fn dead_letters(
        &self,
        filter: &DeadLetterFilter,
        limit: Option<usize>,
    ) -> Result<DeadLetterList> {
        let url = format!("{}/dlq", self.event_consumer);
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(since) = filter.since {
            query.push(("since", since.to_rfc3339()));
        }
        if let Some(event_type) = &filter.event_type {
            query.push(("event_type", event_type.clone()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        let url = reqwest::Url::parse_with_params(&url, &query).map_err(|_| Error::BadBase)?;
        let request = self.request(EVENT_CONSUMER, Method::GET, url.to_string());
        let response = Self::sent(EVENT_CONSUMER, request).await?;
        match Self::answer(EVENT_CONSUMER, response, &[]).await? {
            Answer::Ok(list) => Ok(list),
            Answer::Refused(status, _) => Err(Error::Status {
                service: EVENT_CONSUMER,
                status,
            }),
        }
    }

    /// One dead letter; a malformed or unknown id is the consumer's refusal (422, 404).
    pub async fn dead_letter(&self, id: &str) -> Result<Answer<DeadLetterDetail>> {
        // The id goes in as one path segment, escaped, whatever the client sent.
        let mut url = reqwest::Url::parse(&format!("{}/dlq/", self.event_consumer))
            .map_err(|_| Error::BadBase)?;
        url.path_segments_mut()
            .map_err(|()| Error::BadBase)?
            .pop_if_empty()
            .push(id);
        let request = self.request(EVENT_CONSUMER, Method::GET, url.to_string());
        let response = Self::sent(EVENT_CONSUMER, request).await?;
        let refusals = [StatusCode::NOT_FOUND, StatusCode::UNPROCESSABLE_ENTITY];
        Self::answer(EVENT_CONSUMER, response, &refusals).await
    }

    pub async fn redrive(&self, selection: &RedriveRequest) -> Result<Answer<RedriveReport>> {
        let url = format!("{}/dlq/redrive", self.event_consumer);
        let response = self
            .send(EVENT_CONSUMER, Method::POST, url, Some(selection))
            .await?;
        let refusals = [StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY];
        Self::answer(EVENT_CONSUMER, response, &refusals).await
    }

    /// `GET url` of `service`, which must answer 2xx with a `T`.
    async fn get_ok<T: DeserializeOwned>(&self, service: &'static str, url: String) -> Result<T> {
        let response = self.send(service, Method::GET, url, None::<&()>).await?;
        if !response.status().is_success() {
            return Err(Error::Status {
                service,
                status: response.status(),
            });
        }
        Self::decode(service, response).await
    }
}
