//! Registration input rules. Every invalid field is reported at once, so a client can
//! fix them all in one round trip.

use email_address::EmailAddress;
use serde::Serialize;

pub const NAME_MAX_CHARS: usize = 100;
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 128;
/// RFC 5321's path limit; longer addresses cannot be delivered.
pub const EMAIL_MAX_CHARS: usize = 254;
/// zxcvbn scores 0 and 1 (guessable within ~10^6 tries) are refused.
const MIN_PASSWORD_SCORE: u8 = 2;

pub use platform::wire::Registration;

/// A registration that passed every rule: trimmed fields, password untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// As the user typed it (trimmed); uniqueness and look-ups use `lower(email)`.
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

fn error(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Checks every field; on success returns the user to insert (the password is checked but
/// stays with the caller, who hashes it).
pub fn validate(input: &Registration) -> Result<NewUser, Vec<FieldError>> {
    let mut errors = Vec::new();
    let email = input.email.trim();
    if email.chars().count() > EMAIL_MAX_CHARS {
        errors.push(error(
            "email",
            format!("must be at most {EMAIL_MAX_CHARS} characters"),
        ));
    } else if !EmailAddress::is_valid(email) {
        errors.push(error("email", "must be a valid email address"));
    }
    let first_name = input.first_name.trim();
    let last_name = input.last_name.trim();
    for (field, value) in [("first_name", first_name), ("last_name", last_name)] {
        let chars = value.chars().count();
        if chars == 0 || chars > NAME_MAX_CHARS {
            errors.push(error(
                field,
                format!("must be 1 to {NAME_MAX_CHARS} characters"),
            ));
        }
    }
    let phone = input
        .phone
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    if let Some(phone) = phone {
        if !is_valid_phone(phone) {
            errors.push(error(
                "phone",
                "must be 7 to 20 digits, optionally with a leading +",
            ));
        }
    }
    if let Some(problem) = password_problem(&input.password, &[email, first_name, last_name]) {
        errors.push(error("password", problem));
    }
    if errors.is_empty() {
        Ok(NewUser {
            email: email.to_owned(),
            first_name: first_name.to_owned(),
            last_name: last_name.to_owned(),
            phone: phone.map(str::to_owned),
        })
    } else {
        Err(errors)
    }
}

/// `^\+?[0-9]{7,20}$`
pub fn is_valid_phone(phone: &str) -> bool {
    let digits = phone.strip_prefix('+').unwrap_or(phone);
    (7..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Length in characters (not bytes, any Unicode), no composition rules, no truncation;
/// only passwords a dictionary attack finds at once are refused.
fn password_problem(password: &str, user_inputs: &[&str]) -> Option<String> {
    let chars = password.chars().count();
    if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&chars) {
        return Some(format!(
            "must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"
        ));
    }
    let score = u8::from(zxcvbn::zxcvbn(password, user_inputs).score());
    (score < MIN_PASSWORD_SCORE).then(|| {
        "is too common or too easy to guess; choose a longer or less predictable one".into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration() -> Registration {
        Registration {
            email: " Ada.Lovelace@Example.com ".into(),
            password: "correct horse battery staple".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            phone: Some("+441234567890".into()),
        }
    }

    fn fields(errors: Vec<FieldError>) -> Vec<&'static str> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_valid_registration_is_trimmed_and_keeps_its_case() {
        let user = validate(&registration()).unwrap();
        assert_eq!(user.email, "Ada.Lovelace@Example.com");
        assert_eq!(user.phone.as_deref(), Some("+441234567890"));
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let input = Registration {
            email: "not-an-email".into(),
            password: "short".into(),
            first_name: "".into(),
            last_name: "x".repeat(101),
            phone: Some("12-34".into()),
        };
        assert_eq!(
            fields(validate(&input).unwrap_err()),
            ["email", "first_name", "last_name", "phone", "password"]
        );
    }

    #[test]
    fn names_and_passwords_count_characters_not_bytes() {
        let mut input = registration();
        input.first_name = "é".repeat(100); // 200 bytes, 100 chars
        input.password = "ñandú-añejo-über-straße-日本語".into();
        assert!(validate(&input).is_ok());
        input.password = "日本語日本語日".into(); // 7 chars, 21 bytes
        assert_eq!(fields(validate(&input).unwrap_err()), ["password"]);
    }

    #[test]
    fn common_passwords_and_the_users_own_name_are_refused() {
        let mut input = registration();
        input.password = "password123".into();
        assert_eq!(fields(validate(&input).unwrap_err()), ["password"]);
        input.password = "lovelace".into();
        assert_eq!(fields(validate(&input).unwrap_err()), ["password"]);
    }

    #[test]
    fn long_passwords_are_not_truncated_and_129_chars_are_refused() {
        let mut input = registration();
        input.password = (0..128u32)
            .map(|i| char::from(b'!' + ((i * 37 + 11) % 90) as u8))
            .collect();
        assert!(validate(&input).is_ok());
        input.password.push('z');
        assert_eq!(fields(validate(&input).unwrap_err()), ["password"]);
    }

    #[test]
    fn phone_rules() {
        assert!(is_valid_phone("1234567"));
        assert!(is_valid_phone("+12345678901234567890"));
        assert!(!is_valid_phone("123456"));
        assert!(!is_valid_phone("+123456789012345678901"));
        assert!(!is_valid_phone("++1234567"));
        assert!(!is_valid_phone("123 4567"));
    }

    #[test]
    fn a_blank_phone_means_none() {
        let mut input = registration();
        input.phone = Some("  ".into());
        assert_eq!(validate(&input).unwrap().phone, None);
    }
}
