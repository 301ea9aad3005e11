//! Which database errors are worth retrying. A permanent error (the data, a constraint or
//! the statement itself is wrong) fails the same way on every try, so retrying it forever
//! would stall its partition; a transient one (connection, serialization, deadlock,
//! resources, an operator) goes away by waiting.

use tokio_postgres::error::SqlState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Retrying cannot help: the record that caused it is dead-lettered.
    Permanent,
    /// Retried with backoff.
    Transient,
}

/// Classifies an error by its SQLSTATE class; an error without one (I/O, a closed
/// connection, a timeout) is transient.
pub fn of(error: &tokio_postgres::Error) -> Failure {
    error.code().map_or(Failure::Transient, of_code)
}

/// Class 22 (data exception), 23 (integrity constraint violation) and 42 (syntax error or
/// access rule violation) are permanent; everything else, notably 08 (connection), 40
/// (transaction rollback: serialization failure, deadlock), 53 (insufficient resources) and
/// 57 (operator intervention), is transient.
pub fn of_code(code: &SqlState) -> Failure {
    match code.code().get(..2) {
        Some("22" | "23" | "42") => Failure::Permanent,
        _ => Failure::Transient,
    }
}

/// `SQLSTATE 22008: date out of range`: what a dead letter's `error` says of the database's
/// refusal (the code and the server's message, never a NUL: they are C strings).
pub fn reason(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("SQLSTATE {}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_constraint_and_statement_errors_are_permanent() {
        for code in [
            SqlState::DATETIME_FIELD_OVERFLOW,
            SqlState::CHARACTER_NOT_IN_REPERTOIRE,
            SqlState::INVALID_TEXT_REPRESENTATION,
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
            SqlState::STRING_DATA_RIGHT_TRUNCATION,
            SqlState::CHECK_VIOLATION,
            SqlState::UNIQUE_VIOLATION,
            SqlState::NOT_NULL_VIOLATION,
            SqlState::FOREIGN_KEY_VIOLATION,
            SqlState::SYNTAX_ERROR,
            SqlState::UNDEFINED_COLUMN,
            SqlState::INSUFFICIENT_PRIVILEGE,
        ] {
            assert_eq!(of_code(&code), Failure::Permanent, "{}", code.code());
        }
    }

    #[test]
    fn connection_rollback_resource_and_operator_errors_are_transient() {
        for code in [
            SqlState::CONNECTION_EXCEPTION,
            SqlState::CONNECTION_FAILURE,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::INSUFFICIENT_RESOURCES,
            SqlState::DISK_FULL,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::QUERY_CANCELED,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::from_code("XX000"),
        ] {
            assert_eq!(of_code(&code), Failure::Transient, "{}", code.code());
        }
    }

    #[tokio::test]
    async fn an_error_without_sqlstate_is_transient() {
        // Nothing listens on port 1: an I/O error, no SQLSTATE.
        let config = "host=127.0.0.1 port=1 user=nobody connect_timeout=2";
        let error = tokio_postgres::connect(config, tokio_postgres::NoTls)
            .await
            .err()
            .expect("no server on port 1");
        assert_eq!(error.code(), None);
        assert_eq!(of(&error), Failure::Transient);
    }
}
