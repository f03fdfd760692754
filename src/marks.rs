//! Marks on events (right, wrong, another label), kept as `labels.csv` in the evidence
//! directory: the file `mbt data import` reads to turn the evidence into training clips, so
//! "detect -> correct -> fine-tune -> reload" needs no file editing.
//!
//! Format (what the importer expects): a header `file,label`, then one row per marked event,
//! `file` being the event id (its evidence is `<id>.jpg`, `<id>.wav`, `<id>.json` beside the
//! file). "Right" writes the event's own label, "wrong" writes `none` (the model's "nothing
//! happening" class: a false alarm), "another label" writes that label (it may be one the
//! model does not know yet: `mbt train --add-labels` learns it). One row per event: marking
//! again replaces the row, clearing removes it. Rows the daemon did not write (a user's own
//! edits) are kept as they are. Written atomically (temporary file + rename).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The marks file in an evidence directory.
pub fn path(evidence_dir: &Path) -> PathBuf {
    evidence_dir.join("labels.csv")
}

/// Whether `label` can be a label: lower-case ASCII letters, digits and `_`, 1-64 long
/// (labels become MQTT topic levels and Home Assistant entity ids).
pub fn valid_label(label: &str) -> bool {
    (1..=64).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Reads the marks: event id -> label. Rows that are not `id,label` are skipped (and kept on
/// the next write).
pub fn read(file: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let (id, label) = l.trim().split_once(',')?;
            let id = id.trim().trim_end_matches(".wav").trim_end_matches(".jpg");
            let label = label.split(',').next()?.trim();
            (id != "file" && !id.is_empty() && valid_label(label))
                .then(|| (id.to_string(), label.to_string()))
        })
        .collect()
}

/// Sets (`Some`) or clears (`None`) the mark of event `id`.
pub fn write(file: &Path, id: &str, label: Option<&str>) -> std::io::Result<()> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let row_id = |l: &str| {
        l.split(',')
            .next()
            .map(|f| {
                f.trim()
                    .trim_end_matches(".wav")
                    .trim_end_matches(".jpg")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let mut out = String::from("file,label\n");
    for l in text.lines() {
        if l.trim().is_empty() || l.trim() == "file,label" || row_id(l) == id {
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    if let Some(label) = label {
        out.push_str(&format!("{id},{label}\n"));
    }
    let tmp = file.with_extension("csv.tmp");
    std::fs::write(&tmp, out)?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_replace_by_id_keep_foreign_rows_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let f = path(dir.path());
        assert!(read(&f).is_empty());
        write(&f, "1700-0001", Some("dog_barking")).unwrap();
        write(&f, "1700-0002", Some("none")).unwrap();
        // A user's own row, with a comment-like extra column: kept untouched.
        let mut t = std::fs::read_to_string(&f).unwrap();
        t.push_str("other-0009.wav,door_slammed,checked by hand\n");
        std::fs::write(&f, t).unwrap();
        write(&f, "1700-0001", Some("cat_meowing")).unwrap();
        let m = read(&f);
        assert_eq!(m.len(), 3);
        assert_eq!(m["1700-0001"], "cat_meowing");
        assert_eq!(m["other-0009"], "door_slammed");
        write(&f, "1700-0002", None).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(
            text,
            "file,label\nother-0009.wav,door_slammed,checked by hand\n1700-0001,cat_meowing\n"
        );
    }

    #[test]
    fn labels_must_be_topic_and_entity_safe() {
        for ok in ["dog_barking", "a", "x9"] {
            assert!(valid_label(ok), "{ok}");
        }
        for bad in [
            "",
            "Dog",
            "dog barking",
            "chien_aboie_é",
            "a/b",
            "a,b",
            &"x".repeat(65),
        ] {
            assert!(!valid_label(bad), "{bad}");
        }
    }
}
