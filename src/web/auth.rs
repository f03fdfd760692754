//! The web token: who may look.
//!
//! A request is let in when it carries the token as `Authorization: Bearer <token>` (scripts,
//! Home Assistant's REST sensor), as the `mbtd_token` cookie (the browser, after the first
//! visit), or as `?token=` (that first visit: the response then sets the cookie, so the
//! page's own requests and its live stream carry it). Compared in constant time.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use axum::http::{header, HeaderMap};

pub const COOKIE: &str = "mbtd_token";

/// What a request presented, if anything.
pub fn presented<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .next();
    bearer.or(cookie).or_else(|| query_token(query?))
}

/// `token=` in a query string.
pub fn query_token(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .filter(|t| !t.is_empty())
}

/// Constant-time equality (the length is not secret).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token kept in `path`, made (and printed once) when the file does not exist yet.
pub fn generated_token(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().len() >= 16 => return Ok(t.trim().to_string()),
        Ok(_) => anyhow::bail!(
            "web.token = \"generate\": {} holds no token (16+ characters); delete it to make a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("web.token: cannot read {}", path.display()))
        }
    }
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("web.token: reading /dev/urandom")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("web.token: cannot create {}", dir.display()))?;
    }
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("web.token: cannot create {}", path.display()))?
    };
    writeln!(f, "{token}").with_context(|| format!("web.token: writing {}", path.display()))?;
    // Printed once, to stderr (the journal), not to stdout where events go.
    eprintln!(
        "mbtd: web: generated an access token, kept in {} (shown only now): {token}",
        path.display()
    );
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn finds_the_token_in_header_cookie_or_query() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h, None), None);
        assert_eq!(presented(&h, Some("a=1&token=q")), Some("q"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("x=1; mbtd_token=c"),
        );
        assert_eq!(presented(&h, Some("token=q")), Some("c"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(presented(&h, Some("token=q")), Some("b"));
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }

    #[test]
    fn a_generated_token_is_made_once_and_private() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state").join("web-token");
        let a = generated_token(&p).unwrap();
        assert_eq!(a.len(), 48);
        assert_eq!(generated_token(&p).unwrap(), a, "read back, not remade");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&p, "short\n").unwrap();
        let e = generated_token(&p).unwrap_err().to_string();
        assert!(e.contains("holds no token"), "{e}");
    }
}
