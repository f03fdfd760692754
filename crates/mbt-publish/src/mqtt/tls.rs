//! The TLS client configuration for `mqtts://`, built at start so a missing or unreadable
//! certificate stops the daemon with the field's name instead of failing every reconnect.
//!
//! rustls with the ring provider, chosen explicitly (not the process default), so another
//! crate enabling a second rustls provider cannot make this ambiguous at run time.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, MqttConfig};

fn err(field: &str, path: &Path, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: format!("{}: {reason}", path.display()),
    }
}

fn certs(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(field, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(field, path, e))?;
    if certs.is_empty() {
        return Err(err(field, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

pub fn client_config(cfg: &MqttConfig) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let ca = cfg.ca_file.as_deref().ok_or_else(|| ConfigError {
        field: "mqtt.ca_file".into(),
        reason: "required for mqtts://".into(),
    })?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs("mqtt.ca_file", ca)?);
    if added == 0 {
        return Err(err("mqtt.ca_file", ca, "no usable CA certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError {
            field: "mqtt.url".into(),
            reason: format!("TLS setup: {e}"),
        })?
        .with_root_certificates(roots);
    let config = match (&cfg.client_cert, &cfg.client_key) {
        (Some(c), Some(k)) => {
            let chain = certs("mqtt.client_cert", c)?;
            let key = PrivateKeyDer::from_pem_file(k).map_err(|e| err("mqtt.client_key", k, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| err("mqtt.client_key", k, e))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
