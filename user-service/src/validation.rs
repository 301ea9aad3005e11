//! Registration input rules. Every invalid field is reported at once, so a client can
//! fix them all in one round trip.
//!
//! What is stored is what later lands in mails, logs, events and other people's screens,
//! so each field is parsed into one canonical form: a bare address with its domain
//! lower-cased, names without invisible characters, phones in E.164.

use email_address::{EmailAddress, Options};
use serde::Serialize;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

pub const NAME_MAX_CHARS: usize = 100;
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 128;
/// RFC 5321's path limit; longer addresses cannot be delivered.
pub const EMAIL_MAX_CHARS: usize = 254;
/// Room for the longest E.164 number (15 digits) with its separators; a bound on what
/// reaches the phone number parser.
pub const PHONE_MAX_CHARS: usize = 32;
/// zxcvbn scores 0 and 1 (guessable within ~10^6 tries) are refused.
const MIN_PASSWORD_SCORE: u8 = 2;

const PHONE_MESSAGE: &str = "must be a valid phone number in international form: + and the \
    country code, then the number (spaces, dots, dashes and parentheses allowed), \
    e.g. +44 20 7946 0958";
const HIDDEN_IN_NAME: &str = "must not contain control, invisible or text-direction characters";

pub use platform::wire::Registration;

/// A registration that passed every rule, in its stored form; the password is checked but
/// stays with the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// The local part as the user typed it (mailboxes may be case-sensitive), the domain
    /// lower-cased; uniqueness and look-ups use `lower(email)`.
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// E.164 (`+442079460958`), so one number has one stored form and the unique
    /// constraint sees every spelling of it.
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// The 422 body listing every invalid field.
pub fn invalid_fields(errors: &[FieldError]) -> platform::error::ErrorBody {
    let details = serde_json::to_value(errors).unwrap_or_default();
    platform::error::ErrorBody::new("Validation failed", "One or more fields are invalid.")
        .with_details(details)
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
    let email = parse_email(&input.email).unwrap_or_else(|message| {
        errors.push(error("email", message));
        String::new()
    });
    let first_name = input.first_name.trim();
    let last_name = input.last_name.trim();
    for (field, raw, value) in [
        ("first_name", &input.first_name, first_name),
        ("last_name", &input.last_name, last_name),
    ] {
        if let Some(message) = name_problem(raw, value) {
            errors.push(error(field, message));
        }
    }
    let phone = match input.phone.as_deref() {
        Some(raw) if !raw.trim().is_empty() => parse_phone(raw).map(Some).unwrap_or_else(|| {
            errors.push(error("phone", PHONE_MESSAGE));
            None
        }),
        _ => None,
    };
    let user_inputs = [input.email.trim(), first_name, last_name];
    if let Some(problem) = password_problem(&input.password, &user_inputs) {
        errors.push(error("password", problem));
    }
    if errors.is_empty() {
        Ok(NewUser {
            email,
            first_name: first_name.to_owned(),
            last_name: last_name.to_owned(),
            phone,
        })
    } else {
        Err(errors)
    }
}

/// A profile change that passed the same rules as registration: each field is `None` when
/// the request leaves it alone; `phone: Some(None)` removes the phone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChange {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<Option<String>>,
}

/// Checks the fields a profile update sends, with the registration's rules.
pub fn validate_profile(
    first_name: Option<&str>,
    last_name: Option<&str>,
    phone: Option<Option<&str>>,
) -> Result<ProfileChange, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut change = ProfileChange::default();
    for (field, raw, slot) in [
        ("first_name", first_name, &mut change.first_name),
        ("last_name", last_name, &mut change.last_name),
    ] {
        if let Some(raw) = raw {
            let value = raw.trim();
            match name_problem(raw, value) {
                Some(message) => errors.push(error(field, message)),
                None => *slot = Some(value.to_owned()),
            }
        }
    }
    match phone {
        None => {}
        Some(None) => change.phone = Some(None),
        Some(Some(raw)) if raw.trim().is_empty() => change.phone = Some(None),
        Some(Some(raw)) => match parse_phone(raw) {
            Some(e164) => change.phone = Some(Some(e164)),
            None => errors.push(error("phone", PHONE_MESSAGE)),
        },
    }
    if errors.is_empty() {
        Ok(change)
    } else {
        Err(errors)
    }
}

/// A new password's problem, if any, by the registration's rules (`user_inputs`: the
/// user's email and names, which a password must not be).
pub fn new_password_problem(password: &str, user_inputs: &[&str]) -> Option<FieldError> {
    password_problem(password, user_inputs).map(|message| error("new_password", message))
}

/// What a character hides, if anything: control characters (Cc: CR/LF, NUL, ESC...)
/// break headers, logs and terminals; format characters (Cf: bidi overrides and isolates,
/// zero-width spaces and joiners, the BOM...) make text read as something it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hidden {
    Control,
    Format,
}

fn hidden(value: &str) -> Option<Hidden> {
    value.chars().find_map(|c| match c.general_category() {
        GeneralCategory::Control => Some(Hidden::Control),
        GeneralCategory::Format => Some(Hidden::Format),
        _ => None,
    })
}

/// A bare `local@domain` address, stored with its domain lower-cased. Display text
/// (`Ada <ada@example.com>`), comments, quoted local parts and IP literals are valid in
/// mail headers but are not an address: they are refused, not stripped.
fn parse_email(raw: &str) -> Result<String, String> {
    match hidden(raw) {
        Some(Hidden::Control) => {
            return Err("must not contain control characters or line breaks".into())
        }
        Some(Hidden::Format) => {
            return Err("must not contain invisible or text-direction characters".into())
        }
        None => {}
    }
    let email = raw.trim();
    if email.chars().count() > EMAIL_MAX_CHARS {
        return Err(format!("must be at most {EMAIL_MAX_CHARS} characters"));
    }
    if email
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '"' | '[' | ']' | '\\'))
    {
        return Err(
            "must be a bare address like name@example.com: no spaces, display \
            name, comments, quotes or IP address"
                .into(),
        );
    }
    let strict = Options::default()
        .without_display_text()
        .without_domain_literal();
    let syntax = EmailAddress::parse_with_options(email, strict);
    match (syntax, email.rsplit_once('@')) {
        (Ok(_), Some((local, domain))) => Ok(format!("{local}@{}", domain.to_lowercase())),
        _ => Err("must be an email address like name@example.com".into()),
    }
}

/// `value` is the trimmed name, `raw` what was sent: a control or format character is
/// refused wherever it is, even where trimming would have dropped it.
fn name_problem(raw: &str, value: &str) -> Option<String> {
    if hidden(raw).is_some() {
        return Some(HIDDEN_IN_NAME.into());
    }
    let chars = value.chars().count();
    (chars == 0 || chars > NAME_MAX_CHARS)
        .then(|| format!("must be 1 to {NAME_MAX_CHARS} characters"))
}

/// A phone number in international form (a leading `+` and the country code; no default
/// region is guessed), valid for its country's numbering plan, as E.164. Extensions,
/// letters (`1-800-FLOWERS`) and `tel:` URIs are refused: E.164 cannot hold the first,
/// and the others are not what a person types as their number.
fn parse_phone(raw: &str) -> Option<String> {
    let phone = raw.trim();
    let digits_and_separators = phone
        .strip_prefix('+')?
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'));
    if hidden(raw).is_some() || !digits_and_separators || phone.chars().count() > PHONE_MAX_CHARS {
        return None;
    }
    let number = phonenumber::parse(None, phone).ok()?;
    (phonenumber::is_valid(&number) && number.extension().is_none())
        .then(|| number.format().mode(phonenumber::Mode::E164).to_string())
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

    fn errors(input: &Registration) -> Vec<FieldError> {
        validate(input).expect_err("should be refused")
    }

    #[test]
    fn a_valid_registration_is_trimmed_and_only_the_domain_is_lower_cased() {
        let user = validate(&registration()).unwrap();
        assert_eq!(user.email, "Ada.Lovelace@example.com");
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
            fields(errors(&input)),
            ["email", "first_name", "last_name", "phone", "password"]
        );
        // The new rules add to the list; none of them stops at the first problem.
        let input = Registration {
            email: "Ada <ada@example.com>".into(),
            password: "short".into(),
            first_name: "A\u{202e}da".into(),
            last_name: "Love\u{200b}lace".into(),
            phone: Some("+1 202 555 01".into()),
        };
        assert_eq!(
            fields(errors(&input)),
            ["email", "first_name", "last_name", "phone", "password"]
        );
    }

    /// Display text, comments, quoted local parts, IP literals, CR/LF and other control
    /// or invisible characters: none of them belongs in a stored address (header
    /// injection into mails, look-alike accounts).
    #[test]
    fn only_a_bare_address_is_an_email() {
        for email in [
            "Ada <ada@example.com>",
            "<ada@example.com>",
            "\"Ada Lovelace\" <ada@example.com>",
            "Ada\r\nBcc: eve@example.com <ada@example.com>",
            "ada@example.com\r\nBcc: eve@example.com",
            "ada\n@example.com",
            "ada@example.com\n",
            "ada\t@example.com",
            "ada\u{0}@example.com",
            "ada\u{7f}@example.com",
            "ada(comment)@example.com",
            "ada@example.com(comment)",
            "(comment)ada@example.com",
            "\"ada lovelace\"@example.com",
            "\"ada@evil\"@example.com",
            "ada@[127.0.0.1]",
            "ada@[IPv6:::1]",
            "ada\u{200b}@example.com",
            "ada@exa\u{200d}mple.com",
            "\u{202e}ada@example.com",
            "\u{feff}ada@example.com",
        ] {
            let mut input = registration();
            input.email = email.into();
            let errors = validate(&input).expect_err(email);
            assert_eq!(fields(errors.clone()), ["email"], "{email:?}");
            assert!(errors[0].message.starts_with("must "), "{errors:?}");
        }
    }

    #[test]
    fn the_email_error_says_what_is_wrong() {
        let message = |email: &str| {
            let mut input = registration();
            input.email = email.into();
            errors(&input).remove(0).message
        };
        assert!(
            message("Ada <ada@example.com>").contains("display name"),
            "{}",
            message("Ada <ada@example.com>")
        );
        assert!(message("ada@example.com\r\nBcc: x").contains("control characters"));
        assert!(message("ada@exa\u{200b}mple.com").contains("invisible"));
        assert_eq!(
            message("nope"),
            "must be an email address like name@example.com"
        );
    }

    #[test]
    fn the_domain_is_lower_cased_and_the_local_part_kept_as_typed() {
        let mut input = registration();
        input.email = "  Ada.LOVELACE+Tag@Mail.Example.COM ".into();
        assert_eq!(
            validate(&input).unwrap().email,
            "Ada.LOVELACE+Tag@mail.example.com"
        );
        input.email = "Jürgen@BÜCHER.example".into();
        assert_eq!(validate(&input).unwrap().email, "Jürgen@bücher.example");
    }

    #[test]
    fn names_refuse_control_format_bidi_and_zero_width_characters() {
        let hostile = [
            '\u{0}',
            '\u{7}',
            '\n',
            '\r',
            '\t',
            '\u{1b}',
            '\u{7f}',
            '\u{85}', // Cc
            '\u{ad}',
            '\u{61c}',
            '\u{200e}',
            '\u{200f}',
            '\u{e0001}', // Cf
            '\u{202a}',
            '\u{202b}',
            '\u{202c}',
            '\u{202d}',
            '\u{202e}', // bidi overrides
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}', // bidi isolates
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{2060}',
            '\u{feff}', // zero width
        ];
        for c in hostile {
            let mut input = registration();
            input.first_name = format!("A{c}da");
            input.last_name = format!("Lovelace{c}");
            let errors = validate(&input).expect_err(&format!("U+{:04X}", u32::from(c)));
            assert_eq!(
                fields(errors.clone()),
                ["first_name", "last_name"],
                "U+{:04X}",
                u32::from(c)
            );
            assert!(errors[0].message.contains("invisible"), "{errors:?}");
        }
    }

    #[test]
    fn names_of_any_script_are_accepted() {
        for (first, last) in [
            ("José", "Núñez-Çelik"),
            ("Zoë", "O'Brien"),
            ("محمد", "الخوارزمي"),
            ("Ηλίας", "Παπαδόπουλος"),
            ("李", "小龍"),
            ("Ngô", "Bảo Châu"),
        ] {
            let mut input = registration();
            input.first_name = first.into();
            input.last_name = last.into();
            let user = validate(&input).unwrap_or_else(|e| panic!("{first} {last}: {e:?}"));
            assert_eq!(
                (user.first_name.as_str(), user.last_name.as_str()),
                (first, last)
            );
        }
    }

    #[test]
    fn the_name_limit_counts_characters_of_any_width() {
        for unit in ["é", "日", "👩", "𝔄"] {
            let mut input = registration();
            input.first_name = unit.repeat(NAME_MAX_CHARS);
            input.last_name = unit.repeat(NAME_MAX_CHARS);
            assert!(input.first_name.len() > NAME_MAX_CHARS);
            assert!(validate(&input).is_ok(), "{unit} x {NAME_MAX_CHARS}");
            input.last_name.push_str(unit);
            assert_eq!(fields(errors(&input)), ["last_name"], "{unit} x 101");
        }
    }

    #[test]
    fn phones_are_stored_in_e164() {
        for (typed, stored) in [
            ("+12025550123", "+12025550123"),
            ("+1 202 555 0123", "+12025550123"),
            ("+1 (202) 555-0123", "+12025550123"),
            ("+1.202.555.0123", "+12025550123"),
            (" +44 20 7946 0958 ", "+442079460958"),
            ("+44 (0)20 7946 0958", "+442079460958"),
            ("+33 6 12 34 56 78", "+33612345678"),
            ("+81 3-1234-5678", "+81312345678"),
        ] {
            let mut input = registration();
            input.phone = Some(typed.into());
            let user = validate(&input).unwrap_or_else(|e| panic!("{typed}: {e:?}"));
            assert_eq!(user.phone.as_deref(), Some(stored), "{typed}");
        }
    }

    #[test]
    fn invalid_or_national_phones_are_refused() {
        for phone in [
            "2025550123",    // no country code: which country?
            "0207 946 0958", // national form
            "12ab",
            "+1 202 555 01",         // too short for the plan
            "+1 202 555 01234",      // too long
            "+12345678901234567890", // 20 digits, the old rule's maximum
            "+999 1234567",          // no such country code
            "++12025550123",
            "+1 202 555 0123 ext. 5", // E.164 has no extension
            "+1-800-FLOWERS",
            "tel:+1-202-555-0123",
            "+1 202 555 0123\n",
            "+1 202\u{200b}555 0123",
        ] {
            let mut input = registration();
            input.phone = Some(phone.into());
            let errors = validate(&input).expect_err(phone);
            assert_eq!(fields(errors.clone()), ["phone"], "{phone:?}");
            assert!(errors[0].message.contains('+'), "{errors:?}");
        }
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
    fn parse_phone_gives_e164_or_nothing() {
        assert_eq!(
            parse_phone("+1 202-555-0199").as_deref(),
            Some("+12025550199")
        );
        assert_eq!(parse_phone("+1 202 555 0199 x12"), None);
        assert_eq!(
            parse_phone(&format!("+1 202 555 0199{}", " ".repeat(20))).as_deref(),
            Some("+12025550199")
        );
        assert_eq!(
            parse_phone(&format!("+1{}2025550199", " ".repeat(30))),
            None
        );
    }

    #[test]
    fn a_blank_phone_means_none() {
        let mut input = registration();
        input.phone = Some("  ".into());
        assert_eq!(validate(&input).unwrap().phone, None);
    }
}
