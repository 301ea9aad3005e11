//! TLS to PostgreSQL with libpq's `sslmode` meanings, through rustls.
//!
//! | mode | encrypts | checks the chain | checks the host name |
//! |---|---|---|---|
//! | `disable` | no | - | - |
//! | `prefer` | if the server offers it | only with `DB_SSLROOTCERT` | no |
//! | `require` | yes | only with `DB_SSLROOTCERT` (as libpq) | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |
//!
//! Without `DB_SSLROOTCERT` (or with `DB_SSLROOTCERT=system`) the chain is checked against
//! the operating system's trust store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// libpq's `sslmode`, as `DB_SSLMODE` or `sslmode=` in `DATABASE_URL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            "allow" => Err("DB_SSLMODE=allow is not supported: use prefer (TLS when the server \
                            offers it) or, better, verify-full"
                .into()),
            other => Err(format!(
                "DB_SSLMODE must be disable, prefer, require, verify-ca or verify-full, not {other:?}"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is asked for; the checks are the connector's.
    pub(crate) fn wire(self) -> tokio_postgres::config::SslMode {
        match self {
            Self::Disable => tokio_postgres::config::SslMode::Disable,
            Self::Prefer => tokio_postgres::config::SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

/// The TLS settings: the mode and the files it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// `DB_SSLROOTCERT`: PEM file of the CAs to trust; `None` or `system` = the OS store.
    pub root_cert: Option<PathBuf>,
    /// `DB_SSLCERT` and `DB_SSLKEY`: a client certificate and its key, both or neither.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsSettings {
    fn custom_roots(&self) -> Option<&Path> {
        self.root_cert
            .as_deref()
            .filter(|path| path.as_os_str() != "system")
    }

    /// The rustls configuration for these settings (files read now).
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match self.mode {
            SslMode::Disable => builder.with_root_certificates(RootCertStore::empty()),
            SslMode::VerifyFull => builder.with_root_certificates(self.roots()?),
            SslMode::VerifyCa => builder
                .dangerous()
                .with_custom_certificate_verifier(self.chain_only(provider)?),
            // libpq: with a root certificate file, require (and prefer) check the chain.
            SslMode::Prefer | SslMode::Require if self.custom_roots().is_some() => builder
                .dangerous()
                .with_custom_certificate_verifier(self.chain_only(provider)?),
            SslMode::Prefer | SslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    chain: None,
                    provider,
                })),
        };
        match &self.client_cert {
            None => Ok(builder.with_no_client_auth()),
            Some((cert, key)) => {
                let chain = read_certs(cert, "DB_SSLCERT")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    format!(
                        "DB_SSLKEY: cannot read a private key from {}: {e}",
                        key.display()
                    )
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("DB_SSLCERT / DB_SSLKEY: {e}"))
            }
        }
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match self.custom_roots() {
            Some(path) => {
                for cert in read_certs(path, "DB_SSLROOTCERT")? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("DB_SSLROOTCERT: {}: {e}", path.display()))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                if roots.is_empty() {
                    return Err(format!(
                        "DB_SSLMODE={} needs trusted CAs: the system store has none; set \
                         DB_SSLROOTCERT to your server's CA file",
                        self.mode.name()
                    ));
                }
            }
        }
        Ok(roots)
    }

    fn chain_only(&self, provider: Arc<CryptoProvider>) -> Result<Arc<Lenient>, String> {
        let chain =
            WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots()?), provider.clone())
                .build()
                .map_err(|e| format!("DB_SSLROOTCERT: {e}"))?;
        Ok(Arc::new(Lenient {
            chain: Some(chain),
            provider,
        }))
    }
}

fn read_certs(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| {
            format!(
                "{setting}: cannot read certificates from {}: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{setting}: {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// The two modes that trust less than rustls' default: `verify-ca` (with `chain`: the chain
/// must lead to a trusted CA, the name in the certificate is not compared with the host)
/// and `prefer` / `require` without a root certificate (without `chain`: encrypted, but the
/// server is not authenticated, libpq's meaning). The handshake signatures are always
/// checked.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_names_parse_and_allow_is_refused_with_a_hint() {
        for (name, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("Verify-Full", SslMode::VerifyFull),
        ] {
            assert_eq!(SslMode::parse(name), Ok(mode));
        }
        assert!(SslMode::parse("allow").unwrap_err().contains("prefer"));
        assert!(SslMode::parse("strict").unwrap_err().contains("DB_SSLMODE"));
    }

    #[test]
    fn unreadable_files_name_their_setting() {
        let settings = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some("/nonexistent/ca.crt".into()),
            client_cert: None,
        };
        let error = settings.client_config().unwrap_err();
        assert!(
            error.contains("DB_SSLROOTCERT") && error.contains("/nonexistent/ca.crt"),
            "{error}"
        );
    }
}
