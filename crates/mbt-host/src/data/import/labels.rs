//! Which labels an import may write: the form every label must have, and the set a model
//! allows.
//!
//! Labels become MQTT topic parts (`<prefix>/<device>/<label>`) and Home Assistant entity ids,
//! so they are restricted to `^[a-z0-9_]+$`: a space, an uppercase letter or a non-ASCII
//! letter would be rewritten differently by each consumer. When the caller names the labels
//! (`--labels`, or a model whose metadata lists them), a label outside them is refused unless
//! `--add-labels` lists it: a typo must not silently become a new class.

use anyhow::{bail, Result};

/// Why `label` is not a valid label, or `None` when it is.
pub fn form_error(label: &str) -> Option<String> {
    if label.is_empty() {
        return Some("the label is empty".into());
    }
    let bad: Vec<char> = label
        .chars()
        .filter(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        .collect();
    if bad.is_empty() {
        return None;
    }
    let shown: Vec<String> = bad.iter().map(|c| format!("{c:?}")).collect();
    Some(format!(
        "label `{label}` has {} (labels must match ^[a-z0-9_]+$: they become MQTT topic parts \
         and Home Assistant entity ids; write e.g. `{}`)",
        shown.join(", "),
        suggest(label)
    ))
}

/// A valid spelling close to `label` (lowercase, other characters as `_`).
fn suggest(label: &str) -> String {
    let s: String = label
        .trim()
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.chars().all(|c| c == '_') {
        "my_label".into()
    } else {
        s
    }
}

/// The labels an import may use.
#[derive(Debug, Clone)]
pub struct Allowed {
    /// `None`: any well-formed label.
    known: Option<Vec<String>>,
    /// Where `known` came from (for messages).
    origin: String,
    added: Vec<String>,
}

impl Allowed {
    pub fn new(known: Option<(Vec<String>, String)>, added: Vec<String>) -> Result<Self> {
        for l in known.iter().flat_map(|(k, _)| k).chain(&added) {
            if let Some(e) = form_error(l) {
                bail!("{e}");
            }
        }
        let (known, origin) = match known {
            Some((k, o)) => (Some(k), o),
            None => (None, String::new()),
        };
        Ok(Allowed {
            known,
            origin,
            added,
        })
    }

    /// Checks `label`; the error says which labels are allowed and how to add one.
    pub fn check(&self, label: &str) -> Result<(), String> {
        if let Some(e) = form_error(label) {
            return Err(e);
        }
        let Some(known) = &self.known else {
            return Ok(());
        };
        if known.iter().chain(&self.added).any(|l| l == label) {
            return Ok(());
        }
        let mut allowed = known.clone();
        allowed.extend(self.added.iter().cloned());
        Err(format!(
            "unknown label `{label}`: {} allows {} (a new label must be listed in --add-labels)",
            self.origin,
            allowed.join(", ")
        ))
    }

    /// The label list of the data set: the known labels in their order, then the added ones,
    /// or (nothing known) the labels used, sorted, `none` last.
    pub fn list(&self, used: &[String]) -> Vec<String> {
        let mut out: Vec<String> = match &self.known {
            Some(k) => k.clone(),
            None => {
                let mut u: Vec<String> = used.iter().filter(|l| *l != "none").cloned().collect();
                u.sort();
                u.dedup();
                if used.iter().any(|l| l == "none") {
                    u.push("none".into());
                }
                u
            }
        };
        for a in &self.added {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }
}

/// Splits `a,b,c` (spaces around names ignored, empty names dropped).
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lowercase_ascii_digits_and_underscores() {
        assert!(form_error("dog_barking").is_none());
        assert!(form_error("door2").is_none());
        for bad in ["dog barking", "Dog", "chien_aboie_é", "a-b", ""] {
            let e = form_error(bad).unwrap_or_default();
            assert!(!e.is_empty(), "{bad}");
        }
        let e = form_error("Dog Barking").unwrap_or_default();
        assert!(
            e.contains("' '") && e.contains("dog_barking") && e.contains("MQTT"),
            "{e}"
        );
    }

    #[test]
    fn known_labels_refuse_others_unless_added() {
        let a = Allowed::new(
            Some((vec!["dog_barking".into(), "none".into()], "--labels".into())),
            vec!["doorbell".into()],
        )
        .unwrap();
        assert!(a.check("dog_barking").is_ok() && a.check("doorbell").is_ok());
        let e = a.check("cat").unwrap_err();
        assert!(
            e.contains("`cat`") && e.contains("dog_barking, none, doorbell"),
            "{e}"
        );
        assert_eq!(a.list(&[]), ["dog_barking", "none", "doorbell"]);
        let free = Allowed::new(None, vec![]).unwrap();
        assert!(free.check("anything_1").is_ok());
        let used = ["none".to_string(), "b".into(), "a".into(), "b".into()];
        assert_eq!(free.list(&used), ["a", "b", "none"]);
    }
}
