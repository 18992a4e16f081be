//! The BM25 leg: a tantivy index with one document per chunk.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery, TermSetQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::{ChunkRecord, DocFilter, IndexError, LegHit};

const ANALYZER: &str = "lectern_en";
/// Weight of a title match relative to a body match.
const TITLE_BOOST: f32 = 0.5;

fn analyzer() -> Result<TextAnalyzer, IndexError> {
    let stop = StopWordFilter::new(Language::English)
        .ok_or_else(|| IndexError::Text("English stop words unavailable".into()))?;
    Ok(TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(stop)
        .filter(Stemmer::new(Language::English))
        .build())
}

struct Fields {
    chunk_id: Field,
    doc_id: Field,
    text: Field,
    title: Field,
    record: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let indexed = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        chunk_id: b.add_text_field("chunk_id", STRING | STORED),
        doc_id: b.add_text_field("doc_id", STRING | STORED),
        text: b.add_text_field("text", indexed.clone()),
        title: b.add_text_field("title", indexed),
        record: b.add_text_field("record", STORED),
    };
    (b.build(), fields)
}

pub(crate) struct TextIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
}

impl TextIndex {
    pub(crate) fn open(dir: &Path) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir).map_err(|e| IndexError::Text(e.to_string()))?;
        let index = Index::open_or_create(directory, schema)?;
        index.tokenizers().register(ANALYZER, analyzer()?);
        let writer = match index.writer_with_num_threads(1, 64 * 1024 * 1024) {
            Ok(w) => w,
            Err(tantivy::TantivyError::LockFailure(..)) => {
                return Err(IndexError::Busy(dir.to_path_buf()))
            }
            Err(e) => return Err(e.into()),
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
        })
    }

    fn writer(&self) -> Result<std::sync::MutexGuard<'_, IndexWriter>, IndexError> {
        self.writer
            .lock()
            .map_err(|_| IndexError::Internal("text index writer poisoned".into()))
    }

    pub(crate) fn add_chunks(&self, chunks: &[ChunkRecord]) -> Result<(), IndexError> {
        let mut w = self.writer()?;
        for c in chunks {
            let mut stored = c.clone();
            stored.vector = Vec::new();
            let record =
                serde_json::to_string(&stored).map_err(|e| IndexError::Internal(e.to_string()))?;
            let mut doc = TantivyDocument::default();
            doc.add_text(self.fields.chunk_id, &c.chunk_id);
            doc.add_text(self.fields.doc_id, &c.doc_id);
            doc.add_text(self.fields.text, &c.text);
            doc.add_text(self.fields.title, &c.title);
            doc.add_text(self.fields.record, &record);
            w.add_document(doc)?;
        }
        w.commit()?;
        drop(w);
        self.reader.reload()?;
        Ok(())
    }

    pub(crate) fn delete_documents(&self, doc_ids: &[String]) -> Result<(), IndexError> {
        let mut w = self.writer()?;
        for id in doc_ids {
            w.delete_term(Term::from_field_text(self.fields.doc_id, id));
        }
        w.commit()?;
        drop(w);
        self.reader.reload()?;
        Ok(())
    }

    fn count_doc(&self, doc_id: &str) -> Result<usize, IndexError> {
        let q = TermQuery::new(
            Term::from_field_text(self.fields.doc_id, doc_id),
            IndexRecordOption::Basic,
        );
        Ok(self.reader.searcher().search(&q, &Count)?)
    }

    /// Removes every chunk and the files that held them.
    pub(crate) fn clear(&self) -> Result<(), IndexError> {
        let mut w = self.writer()?;
        w.delete_all_documents()?;
        w.commit()?;
        w.garbage_collect_files().wait()?;
        drop(w);
        self.reader.reload()?;
        Ok(())
    }

    /// Live chunks per document id.
    pub(crate) fn chunks_per_doc(&self) -> Result<HashMap<String, usize>, IndexError> {
        self.doc_ids()?
            .into_iter()
            .map(|id| {
                let n = self.count_doc(&id)?;
                Ok((id, n))
            })
            .collect()
    }

    /// Merges all segments into one and deletes files no longer in use, so
    /// deleted chunks leave the disk.
    pub(crate) fn compact(&self) -> Result<(), IndexError> {
        let mut w = self.writer()?;
        let ids = self.index.searchable_segment_ids()?;
        let has_deletes = self
            .reader
            .searcher()
            .segment_readers()
            .iter()
            .any(|s| s.has_deletes());
        if !ids.is_empty() && (ids.len() > 1 || has_deletes) {
            w.merge(&ids).wait()?;
        }
        w.commit()?;
        w.garbage_collect_files().wait()?;
        drop(w);
        self.reader.reload()?;
        Ok(())
    }

    /// Ids of documents that have at least one live chunk.
    pub(crate) fn doc_ids(&self) -> Result<HashSet<String>, IndexError> {
        let searcher = self.reader.searcher();
        let mut candidates = HashSet::new();
        for segment in searcher.segment_readers() {
            let inverted = segment.inverted_index(self.fields.doc_id)?;
            let mut stream = inverted
                .terms()
                .stream()
                .map_err(|e| IndexError::Text(e.to_string()))?;
            while stream.advance() {
                candidates.insert(String::from_utf8_lossy(stream.key()).into_owned());
            }
        }
        // Terms of deleted chunks linger until segments merge; keep live ones.
        let mut live = HashSet::new();
        for id in candidates {
            if self.count_doc(&id)? > 0 {
                live.insert(id);
            }
        }
        Ok(live)
    }

    pub(crate) fn num_docs(&self) -> Result<usize, IndexError> {
        Ok(self.reader.searcher().num_docs() as usize)
    }

    /// The best `k` chunks for `query`, among the documents `filter` allows
    /// when there is one (the filter is part of the query, so the top `k`
    /// are found among those documents, with unchanged BM25 scores).
    pub(crate) fn search(
        &self,
        query: &str,
        k: usize,
        filter: Option<&DocFilter>,
    ) -> Result<Vec<LegHit>, IndexError> {
        let mut analyzer = self
            .index
            .tokenizer_for_field(self.fields.text)
            .map_err(IndexError::from)?;
        let mut terms = Vec::new();
        let mut stream = analyzer.token_stream(query);
        while stream.advance() {
            terms.push(stream.token().text.clone());
        }
        if terms.is_empty() || k == 0 || filter.is_some_and(DocFilter::is_empty) {
            return Ok(Vec::new());
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for t in &terms {
            clauses.push((
                Occur::Should,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.fields.text, t),
                    IndexRecordOption::WithFreqs,
                )),
            ));
            clauses.push((
                Occur::Should,
                Box::new(tantivy::query::BoostQuery::new(
                    Box::new(TermQuery::new(
                        Term::from_field_text(self.fields.title, t),
                        IndexRecordOption::WithFreqs,
                    )),
                    TITLE_BOOST,
                )),
            ));
        }
        let mut query: Box<dyn Query> = Box::new(BooleanQuery::new(clauses));
        if let Some(filter) = filter {
            let allowed = TermSetQuery::new(
                filter
                    .ids()
                    .map(|id| Term::from_field_text(self.fields.doc_id, id)),
            );
            // A score of zero: the filter decides membership, not rank.
            query = Box::new(BooleanQuery::new(vec![
                (Occur::Must, query),
                (
                    Occur::Must,
                    Box::new(ConstScoreQuery::new(Box::new(allowed), 0.0)),
                ),
            ]));
        }
        let searcher = self.reader.searcher();
        let top = searcher.search(&*query, &TopDocs::with_limit(k).order_by_score())?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let record = doc
                .get_first(self.fields.record)
                .and_then(|v| v.as_str())
                .ok_or_else(|| IndexError::Text("chunk without stored record".into()))?;
            let chunk: ChunkRecord =
                serde_json::from_str(record).map_err(|e| IndexError::Text(e.to_string()))?;
            hits.push(LegHit { chunk, score });
        }
        Ok(hits)
    }
}
