//! `DATABASE_URL` in libpq's URI form:
//! `postgresql://user:password@host:port/dbname?sslmode=verify-full&sslrootcert=/ca.pem`.
//! Its parts replace the `DB_*` ones.

use secrecy::SecretString;

use super::Raw;

const PARAMETERS: &str = "sslmode, sslrootcert, sslcert, sslkey, hostaddr, connect_timeout";

pub(crate) fn apply(value: &str, raw: &mut Raw) -> Result<(), String> {
    // Never echo the URL: it holds the password.
    let url = url::Url::parse(value.trim())
        .map_err(|e| format!("DATABASE_URL is not a URL ({e}); the form is postgresql://user:password@host:port/dbname"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "DATABASE_URL must start with postgresql:// (or postgres://), not {}://",
            url.scheme()
        ));
    }
    let decode = |part: &str| {
        percent_decode(part)
            .ok_or_else(|| "DATABASE_URL: bad %-escape in the user or password".to_owned())
    };
    if let Some(host) = url.host_str().filter(|h| !h.is_empty()) {
        raw.db_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
    }
    if let Some(port) = url.port() {
        raw.db_port = port;
    }
    if !url.username().is_empty() {
        raw.db_user = decode(url.username())?;
    }
    if let Some(password) = url.password() {
        raw.db_password = SecretString::from(decode(password)?);
    }
    let name = url.path().trim_start_matches('/');
    if !name.is_empty() {
        raw.db_name = decode(name)?;
    }
    for (key, value) in url.query_pairs() {
        let value = value.into_owned();
        match key.as_ref() {
            "sslmode" => raw.db_sslmode = Some(value),
            "sslrootcert" => raw.db_sslrootcert = Some(value),
            "sslcert" => raw.db_sslcert = Some(value),
            "sslkey" => raw.db_sslkey = Some(value),
            "hostaddr" => raw.db_hostaddr = Some(value),
            "connect_timeout" => {
                let seconds: u64 = value.parse().map_err(|_| {
                    format!("DATABASE_URL: connect_timeout must be seconds, not {value:?}")
                })?;
                raw.db_timeout_ms = seconds.saturating_mul(1000);
            }
            other => {
                return Err(format!(
                    "DATABASE_URL: parameter {other:?} is not supported (supported: {PARAMETERS})"
                ))
            }
        }
    }
    Ok(())
}

fn percent_decode(part: &str) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_schemes_and_unknown_parameters_are_refused_without_echoing_the_url() {
        let mut raw = Raw::default();
        let error = apply("mysql://u:secret@h/db", &mut raw).unwrap_err();
        assert!(
            error.contains("postgresql://") && !error.contains("secret"),
            "{error}"
        );
        let error = apply("postgresql://u:secret@h/db?options=-c%20x", &mut raw).unwrap_err();
        assert!(
            error.contains("options") && !error.contains("secret"),
            "{error}"
        );
        let error = apply("not a url secret", &mut raw).unwrap_err();
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn ipv6_hosts_and_verify_full_parameters() {
        let mut raw = Raw::default();
        apply(
            "postgres://[2001:db8::5]:5433/app?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            &mut raw,
        )
        .unwrap();
        assert_eq!(raw.db_host, "2001:db8::5");
        assert_eq!(raw.db_port, 5433);
        assert_eq!(raw.db_sslmode.as_deref(), Some("verify-full"));
        assert_eq!(raw.db_sslrootcert.as_deref(), Some("/etc/ca.pem"));
    }
}
