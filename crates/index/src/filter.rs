//! Restricting a search to a set of documents.

use std::collections::BTreeSet;

use crate::IndexError;

/// The documents a search may return chunks from.
///
/// Both retrieval legs apply it before ranking: the BM25 leg intersects its
/// query with the document ids, and the dense leg prefilters LanceDB rows
/// (also when an ANN index is used), so `k` hits are found among these
/// documents however low they rank in the whole library. An empty filter
/// matches nothing.
///
/// Document ids are checked when the filter is made: each must be
/// non-empty, at most 128 characters, and made of ASCII letters, digits,
/// `-`, `_` and `.` (Lectern's ids are hexadecimal), so no id can change the
/// meaning of the store queries built from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocFilter {
    ids: BTreeSet<String>,
}

/// The longest document id a filter accepts.
const MAX_ID_LEN: usize = 128;

impl DocFilter {
    /// A filter allowing exactly these documents; an invalid id is an
    /// [`IndexError::InvalidInput`] naming it.
    pub fn new<I, S>(doc_ids: I) -> Result<Self, IndexError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut ids = BTreeSet::new();
        for id in doc_ids {
            let id: String = id.into();
            let valid = !id.is_empty()
                && id.len() <= MAX_ID_LEN
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !valid {
                return Err(IndexError::InvalidInput(format!(
                    "`{}` is not a document id (expected up to {MAX_ID_LEN} ASCII letters, digits, `-`, `_` or `.`)",
                    id.escape_debug()
                )));
            }
            ids.insert(id);
        }
        Ok(Self { ids })
    }

    /// Whether the filter allows no document at all.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// How many documents the filter allows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether chunks of `doc_id` may be returned.
    pub fn allows(&self, doc_id: &str) -> bool {
        self.ids.contains(doc_id)
    }

    /// The allowed document ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(String::as_str)
    }

    /// The LanceDB predicate selecting the allowed documents' rows. Ids are
    /// validated on construction; quotes are doubled all the same.
    pub(crate) fn sql_predicate(&self) -> String {
        let list: Vec<String> = self
            .ids
            .iter()
            .map(|d| format!("'{}'", d.replace('\'', "''")))
            .collect();
        format!("doc_id IN ({})", list.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated_and_deduplicated() {
        let f = DocFilter::new(["0a1b2c3d4e5f6789", "0a1b2c3d4e5f6789", "ffff"]).unwrap();
        assert_eq!(f.len(), 2);
        assert!(f.allows("ffff"));
        assert!(!f.allows("fff"));
        assert_eq!(f.sql_predicate(), "doc_id IN ('0a1b2c3d4e5f6789', 'ffff')");
        for bad in ["", "a' OR '1'='1", "a b", "x\u{e9}", &"a".repeat(129)] {
            let err = DocFilter::new([bad]).unwrap_err();
            assert!(
                matches!(err, IndexError::InvalidInput(ref m) if m.contains("is not a document id")),
                "{bad:?}: {err}"
            );
        }
        assert!(DocFilter::new(Vec::<String>::new()).unwrap().is_empty());
    }
}
