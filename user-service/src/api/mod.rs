//! The HTTP API, documented with poem-openapi. Every endpoint but `/health` needs the
//! internal key; every error is the JSON body of [`crate::error::ErrorBody`].

/// `From<Failure>` for a response enum with `Unavailable` (503) and `Internal` (500)
/// variants: the cause is logged, the client gets the generic body.
macro_rules! failure_responses {
    ($ty:ident) => {
        impl From<$crate::state::Failure> for $ty {
            fn from(failure: $crate::state::Failure) -> Self {
                failure.log();
                match failure {
                    $crate::state::Failure::Unavailable(_) => Self::Unavailable(
                        ::poem_openapi::payload::Json($crate::error::ErrorBody::unavailable()),
                    ),
                    $crate::state::Failure::Internal(_) => Self::Internal(
                        ::poem_openapi::payload::Json($crate::error::ErrorBody::internal()),
                    ),
                }
            }
        }
    };
}

pub mod admin;
pub mod auth;
pub mod health;
pub mod users;
