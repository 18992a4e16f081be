//! The one facade both front ends (the `lectern` CLI and the desktop app)
//! call. It owns the library on disk, the embedding model, the language
//! model and the device choice, and runs the pipelines:
//!
//! * ingest: files → pages → chunks → embeddings → LanceDB + tantivy;
//! * search: BM25, dense or hybrid retrieval with per-leg evidence;
//! * ask: retrieve, pack numbered sources into the prompt budget, generate
//!   with Qwen3 while streaming tokens, and list the sources the answer cites;
//! * eval: BEIR-format retrieval evaluation (nDCG@10, Recall@100, MRR@10).
//!
//! Heavy compute (parsing, embedding, generation) runs on blocking threads;
//! the async methods never block the runtime.

mod ask;
pub mod bench;
pub mod bench_llm;
pub mod bench_search;
mod collections;
mod config;
mod conversations;
mod device;
mod doctor;
mod error;
pub mod eval;
mod export;
mod ingest;
pub mod quote_check;
mod reembed;
mod rerank;
mod watch;
mod watched;
pub mod worker;
pub mod worker_policy;

pub use ask::{
    Answer, AskEvent, AskRequest, AskTimings, Citation, RetrievalTrace, SourceRef, TraceHit,
};
pub use collections::{
    clean_collection_name, Collection, CollectionError, CollectionStore, COLLECTIONS_FILE,
    MAX_COLLECTION_NAME_CHARS,
};
pub use config::{
    embedder_config_for, embedder_name, resolve_embedder, worker_setting, EngineConfig, WorkerMode,
    DEFAULT_EMBEDDER, KV_DTYPE_ENV_VAR,
};
pub use conversations::{
    AnswerScope, Conversation, ConversationError, ConversationStore, ConversationSummary, Message,
    MessageRole,
};
pub use device::{
    gpu_report, llm_budget, llm_candidates, recommend_llm, recommend_llm_with_kv,
    IDLE_UNLOAD_ENV_VAR,
};
pub use doctor::{doctor, DataDirCheck, DoctorReport, LibraryCheck, ModelCheck, DOCTOR_CONTEXT};
pub use error::EngineError;
pub use ingest::{IngestEvent, IngestReport, IngestStage, OverallProgress, ProgressFn, StageTimes};
/// GPU devices, telemetry, memory management and model recommendation.
pub use lectern_gpu as gpu;
pub use lectern_gpu::{DevicePreference, GpuEvent, GpuSnapshot, GpuStatus, RecoveryStep, Sample};
/// The model catalog and verified downloads.
pub use lectern_hub as hub;
pub use lectern_index::{
    AnnPolicy, ChunkRecord, Consistency, DocumentEntry, Fusion, LibraryCounts, SearchHit,
    SearchMode, VectorIndexState,
};
pub use lectern_ingest::ChunkConfig;
pub use lectern_models::{GenerationParams, KvDtype, ParseKvDtypeError};

/// Prepares this process for CPU language models: quantized products run
/// on Lectern's own threads instead of candle's pool, which stalls when a
/// busy desktop leaves a pool thread without a core. Call it first thing in
/// `main`, before any other thread starts; returns whether it took effect
/// (`CANDLE_NUM_THREADS` set by the user wins).
pub fn prefer_own_cpu_threads() -> bool {
    lectern_models::Qwen3::prefer_own_cpu_threads()
}
pub use quote_check::{CitationCheck, Support};
pub use reembed::{ReembedEvent, ReembedProgressFn, ReembedReport};
pub use rerank::{
    reranker_from_env, resolve_reranker, RerankMode, DEFAULT_RERANK_DEPTH, RERANKER_ENV_VAR,
    RERANK_DEPTH_ENV_VAR,
};
pub use watch::{WatchEvent, WatchFn};
pub use watched::{WatchedFolders, WATCHED_FOLDERS_FILE};
pub use worker::{WorkerConfig, WorkerError, WorkerStatus, WORKER_ENV_VAR};
pub use worker_policy::{WorkerModeKind, WorkerPlan, WorkerReport};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lectern_gpu::DeviceKind;
use lectern_index::{DocFilter, Library};
use lectern_ingest::Chunker;
use lectern_models::{Embedder, Llm};

/// A search request.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SearchRequest {
    /// What to look for.
    pub query: String,
    /// Which retrieval to run.
    #[serde(default)]
    pub mode: SearchMode,
    /// How many hits to return.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// The collection to search in (by name); `None` searches the whole
    /// library.
    #[serde(default)]
    pub collection: Option<String>,
}

impl SearchRequest {
    /// A request for `query` with the default mode and number of hits,
    /// over the whole library.
    pub fn new(query: impl Into<String>) -> Self {
        Self {
            query: query.into(),
            mode: SearchMode::default(),
            top_k: default_top_k(),
            collection: None,
        }
    }
}

fn default_top_k() -> usize {
    10
}

/// The engine: one library, one embedder, at most one loaded language model.
pub struct Engine {
    config: EngineConfig,
    library: Library,
    /// The embedder and chunker in use; both change together when the
    /// library switches embedding model.
    embedder: reembed::Current<Embedder>,
    chunker: reembed::Current<Chunker>,
    /// The name the library records for the embedder in use.
    embedder_id: std::sync::RwLock<Option<String>>,
    /// Held shared by ingest and exclusively while an embedding model
    /// switch changes the library's model.
    switch_gate: tokio::sync::RwLock<()>,
    device: DeviceKind,
    gpu: GpuStatus,
    gpu_side: Arc<device::GpuSide>,
    llm: Arc<Mutex<Option<Llm>>>,
    /// How hybrid search fuses its legs.
    fusion: std::sync::RwLock<Fusion>,
    /// The rerank stage.
    reranker: Arc<rerank::RerankSide>,
    /// Whether the model worker is used, and why.
    worker_plan: WorkerPlan,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.config.data_dir)
            .field("device", &self.device)
            .finish()
    }
}

/// Picks the compute device for `pref` and reports why.
pub fn gpu_status(pref: DevicePreference) -> Result<GpuStatus, EngineError> {
    let telemetry = lectern_gpu::probe_telemetry();
    Ok(lectern_gpu::status(
        pref,
        lectern_models::capabilities(),
        telemetry.as_ref(),
    )?)
}

impl Engine {
    /// Opens the library in `config.data_dir` and loads the embedder.
    pub async fn open(mut config: EngineConfig) -> Result<Self, EngineError> {
        config.follow_library_embedder();
        let mut gpu_side = device::GpuSide::open(config.device)?;
        let gpu = gpu_side.status().clone();
        let worker_plan = worker_policy::plan_in_background(&config, &gpu).await?;
        if let Some(worker) = &worker_plan.config {
            // Where the worker said its models run; this engine's device
            // when it was not asked (a worker named explicitly).
            let device = worker_plan
                .hello
                .as_ref()
                .map_or(gpu.selected, |hello| hello.device);
            gpu_side.use_worker(
                worker::WorkerSupervisor::new(worker.clone(), config.device),
                device,
            );
        }
        let device = gpu.selected;
        tracing::info!(device = %device, reason = %gpu.reason, "compute device");
        if !config.embedder_dir.join("config.json").is_file() {
            return Err(EngineError::NoEmbedder(config.embedder_dir.clone()));
        }
        let emb_cfg = config.embedder_config()?;
        let chunk_cfg = config.chunking.clone();
        let dev = device;
        let (embedder, chunker) = tokio::task::spawn_blocking(move || {
            let candle_dev = lectern_models::candle_device(&dev)?;
            let tok_path = emb_cfg.dir.join("tokenizer.json");
            let embedder = Embedder::load(emb_cfg, &candle_dev)?;
            let chunker = Chunker::from_tokenizer_file(&tok_path, chunk_cfg)?;
            Ok::<_, EngineError>((embedder, chunker))
        })
        .await
        .map_err(EngineError::join)??;
        let embedder_id = config::embedder_name(&config.embedder_dir);
        let library = Library::open_for(
            &config.data_dir.join("library"),
            embedder.dim(),
            embedder_id.as_deref(),
        )
        .await?;
        Ok(Self {
            library,
            embedder: reembed::Current::new(embedder),
            chunker: reembed::Current::new(chunker),
            embedder_id: std::sync::RwLock::new(embedder_id),
            switch_gate: tokio::sync::RwLock::new(()),
            device,
            gpu,
            gpu_side: Arc::new(gpu_side),
            llm: Arc::new(Mutex::new(None)),
            fusion: std::sync::RwLock::new(Fusion::default()),
            reranker: Arc::new(rerank::RerankSide::new(
                config.reranker.clone(),
                config.rerank_depth,
            )),
            config,
            worker_plan,
        })
    }

    /// The model worker: whether it is used and why, what it said about
    /// itself, and its state (see [`worker_policy`]).
    pub fn worker_report(&self) -> WorkerReport {
        WorkerReport::new(self.worker_plan.clone(), self.worker_status())
    }

    /// The configuration the engine was opened with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The device models run on, and why, with GPU telemetry where available.
    pub fn gpu_status(&self) -> &GpuStatus {
        &self.gpu
    }

    /// The conversations kept in the library's data folder.
    pub fn conversations(&self) -> ConversationStore {
        ConversationStore::new(self.config.data_dir.join("conversations"))
    }

    /// Documents that are fully indexed.
    pub async fn documents(&self) -> Vec<DocumentEntry> {
        self.library.documents().await
    }

    /// How much each store holds.
    pub async fn stats(&self) -> Result<LibraryCounts, EngineError> {
        Ok(self.library.counts().await?)
    }

    /// Removes a document by id, takes it out of every collection, then
    /// compacts the library so its text leaves the disk. Returns whether
    /// the document was indexed.
    pub async fn delete_document(&self, doc_id: &str) -> Result<bool, EngineError> {
        let existed = self.library.delete_document(doc_id).await?;
        self.forget_in_collections(vec![doc_id.to_string()]).await?;
        if existed {
            self.library.compact().await?;
        }
        Ok(existed)
    }

    /// The indexed document `target` names: its id, or the path it was
    /// read from (as given or canonical).
    pub async fn find_document(&self, target: &str) -> Option<DocumentEntry> {
        let docs = self.library.documents().await;
        if let Some(d) = docs.iter().find(|d| d.doc_id == target) {
            return Some(d.clone());
        }
        let path = Path::new(target);
        let key = std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .to_string_lossy()
            .into_owned();
        docs.into_iter()
            .find(|d| d.path == key || Path::new(&d.path) == path)
    }

    /// Removes the document read from `path` (as given or canonical), if
    /// it is indexed. Returns whether it was.
    pub async fn delete_path(&self, path: &Path) -> Result<bool, EngineError> {
        let key = std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .to_string_lossy()
            .into_owned();
        let id = self
            .library
            .documents()
            .await
            .into_iter()
            .find(|d| d.path == key || Path::new(&d.path) == path)
            .map(|d| d.doc_id);
        match id {
            Some(id) => self.delete_document(&id).await,
            None => Ok(false),
        }
    }

    /// Rewrites the stores without deleted chunks and drops old versions.
    pub async fn compact(&self) -> Result<(), EngineError> {
        Ok(self.library.compact().await?)
    }

    /// Checks that the manifest, LanceDB and tantivy agree.
    pub async fn verify(&self) -> Result<Consistency, EngineError> {
        Ok(self.library.verify().await?)
    }

    /// Documents indexed by an older version of Lectern that must be
    /// indexed again (the library was rebuilt when it was opened).
    pub async fn pending_reindex(&self) -> Vec<PathBuf> {
        self.library.pending_reindex().await
    }

    /// Embeds a query on a blocking thread.
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>, EngineError> {
        let embedder = self.embedder.clone();
        let q = query.to_string();
        let v = tokio::task::spawn_blocking(move || embedder.embed_query(&q))
            .await
            .map_err(EngineError::join)??;
        let id = self
            .embedder_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.library
            .check_query_embedder(id.as_deref(), v.len())
            .await?;
        Ok(v)
    }

    /// How hybrid search fuses the BM25 and dense rankings.
    pub fn fusion(&self) -> Fusion {
        *self.fusion.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Chooses how hybrid search fuses its legs from now on.
    pub fn set_fusion(&self, fusion: Fusion) {
        *self.fusion.write().unwrap_or_else(|e| e.into_inner()) = fusion;
    }

    /// When the dense leg uses an approximate-nearest-neighbour index.
    pub fn ann_policy(&self) -> AnnPolicy {
        self.library.ann_policy()
    }

    /// The state of the dense leg's approximate-nearest-neighbour index.
    pub async fn vector_index(&self) -> Result<VectorIndexState, EngineError> {
        Ok(self.library.vector_index().await?)
    }

    /// The library's collections.
    pub fn collection_store(&self) -> CollectionStore {
        CollectionStore::new(self.library.dir())
    }

    /// Runs `f` on the collection store on a blocking thread.
    async fn with_collections<T, F>(&self, f: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: FnOnce(&CollectionStore) -> Result<T, CollectionError> + Send + 'static,
    {
        let store = self.collection_store();
        Ok(tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(EngineError::join)??)
    }

    /// Every collection, by name, listing only documents that are indexed.
    pub async fn collections(&self) -> Result<Vec<Collection>, EngineError> {
        let mut list = self.with_collections(|s| s.list()).await?;
        let known = self.library.documents().await;
        for c in &mut list {
            c.doc_ids.retain(|id| known.iter().any(|d| d.doc_id == *id));
        }
        Ok(list)
    }

    /// The collection called `name` (compared without regard to case),
    /// listing only documents that are indexed.
    pub async fn collection(&self, name: &str) -> Result<Collection, EngineError> {
        let name = name.to_string();
        let mut c = self.with_collections(move |s| s.get(&name)).await?;
        let known = self.library.documents().await;
        c.doc_ids.retain(|id| known.iter().any(|d| d.doc_id == *id));
        Ok(c)
    }

    /// Makes an empty collection. Names are trimmed, 1 to 64 characters,
    /// and unique without regard to case.
    pub async fn create_collection(&self, name: &str) -> Result<Collection, EngineError> {
        let name = name.to_string();
        self.with_collections(move |s| s.create(&name)).await
    }

    /// Renames a collection; conversations scoped to it follow.
    pub async fn rename_collection(
        &self,
        name: &str,
        new_name: &str,
    ) -> Result<Collection, EngineError> {
        let (old, new) = (name.to_string(), new_name.to_string());
        let renamed = self.with_collections(move |s| s.rename(&old, &new)).await?;
        self.rescope_conversations(name, Some(renamed.name.clone()))
            .await?;
        Ok(renamed)
    }

    /// Deletes a collection; its documents stay in the library, and
    /// conversations scoped to it are scoped to the whole library again.
    pub async fn delete_collection(&self, name: &str) -> Result<Collection, EngineError> {
        let n = name.to_string();
        let gone = self.with_collections(move |s| s.delete(&n)).await?;
        self.rescope_conversations(&gone.name, None).await?;
        Ok(gone)
    }

    async fn rescope_conversations(
        &self,
        from: &str,
        to: Option<String>,
    ) -> Result<(), EngineError> {
        let store = self.conversations();
        let from = from.to_string();
        tokio::task::spawn_blocking(move || store.rescope(&from, to.as_deref()))
            .await
            .map_err(EngineError::join)??;
        Ok(())
    }

    /// Adds indexed documents (by id) to a collection. An id that is not in
    /// the library is an error and nothing is added.
    pub async fn add_to_collection(
        &self,
        name: &str,
        doc_ids: &[String],
    ) -> Result<Collection, EngineError> {
        for id in doc_ids {
            if self.library.document(id).await.is_none() {
                return Err(CollectionError::UnknownDocument(id.clone()).into());
            }
        }
        let (name, ids) = (name.to_string(), doc_ids.to_vec());
        self.with_collections(move |s| s.add(&name, &ids)).await
    }

    /// Takes documents (by id) out of a collection; they stay in the
    /// library. Ids not in the collection are ignored.
    pub async fn remove_from_collection(
        &self,
        name: &str,
        doc_ids: &[String],
    ) -> Result<Collection, EngineError> {
        let (name, ids) = (name.to_string(), doc_ids.to_vec());
        self.with_collections(move |s| s.remove(&name, &ids)).await
    }

    /// Scopes a conversation to a collection (`None`: the whole library)
    /// after checking that the collection exists; stores the collection's
    /// name as it is spelt.
    pub async fn set_conversation_collection(
        &self,
        conversation_id: &str,
        collection: Option<&str>,
    ) -> Result<Conversation, EngineError> {
        let name = match collection.map(str::trim).filter(|c| !c.is_empty()) {
            Some(c) => Some(self.collection(c).await?.name),
            None => None,
        };
        let store = self.conversations();
        let id = conversation_id.to_string();
        Ok(
            tokio::task::spawn_blocking(move || store.set_collection(&id, name.as_deref()))
                .await
                .map_err(EngineError::join)??,
        )
    }

    /// Takes documents that left the library out of every collection.
    pub(crate) async fn forget_in_collections(
        &self,
        doc_ids: Vec<String>,
    ) -> Result<(), EngineError> {
        self.with_collections(move |s| s.forget_documents(&doc_ids))
            .await
            .map(|_| ())
    }

    /// The document filter for a search scoped to `collection`; `None`
    /// when the search covers the whole library. An unknown collection is
    /// an error; an empty one gives a filter that matches nothing.
    pub(crate) async fn scope_filter(
        &self,
        collection: Option<&str>,
    ) -> Result<Option<DocFilter>, EngineError> {
        let Some(name) = collection.map(str::trim).filter(|c| !c.is_empty()) else {
            return Ok(None);
        };
        let c = self.collection(name).await?;
        Ok(Some(DocFilter::new(c.doc_ids)?))
    }

    /// Runs a search, fusing hybrid results as [`Engine::fusion`] says.
    pub async fn search(&self, req: &SearchRequest) -> Result<Vec<SearchHit>, EngineError> {
        self.search_with(req, self.fusion()).await
    }

    /// Runs a search with the given fusion for hybrid mode. In hybrid mode
    /// the BM25 leg runs while the query is embedded and the dense leg
    /// searched; neither waits for the other. When a reranker runs (see
    /// [`Engine::rerank_mode`]) the top [`Engine::rerank_depth`] candidates
    /// are re-scored and reordered by it, and each carries its
    /// `rerank_score` beside the retrieval evidence.
    pub async fn search_with(
        &self,
        req: &SearchRequest,
        fusion: Fusion,
    ) -> Result<Vec<SearchHit>, EngineError> {
        if req.query.trim().is_empty() {
            return Err(EngineError::InvalidInput(
                "the search query is empty".into(),
            ));
        }
        let k = req.top_k.max(1);
        let filter = self.scope_filter(req.collection.as_deref()).await?;
        if filter.as_ref().is_some_and(DocFilter::is_empty) {
            return Ok(Vec::new());
        }
        let Some(reranker) = self.reranker_for_search().await? else {
            return self.retrieve(req, fusion, k, filter.as_ref()).await;
        };
        let candidates = self
            .retrieve(req, fusion, k.max(self.rerank_depth()), filter.as_ref())
            .await?;
        self.rerank_hits(reranker, &req.query, candidates, k).await
    }

    /// The retrieval stages of a search: the legs `req.mode` asks for and,
    /// in hybrid mode, their fusion; the best `k` hits among the documents
    /// `filter` allows (all when `None`), each leg filtered before ranking.
    async fn retrieve(
        &self,
        req: &SearchRequest,
        fusion: Fusion,
        k: usize,
        filter: Option<&DocFilter>,
    ) -> Result<Vec<SearchHit>, EngineError> {
        // The query embedder and the vector table change together, never
        // between embedding a query and searching with it.
        let _switch = self.switch_gate.read().await;
        match req.mode {
            SearchMode::Bm25 => Ok(self
                .library
                .search_fused_filtered(&req.query, None, SearchMode::Bm25, k, fusion, filter)
                .await?),
            SearchMode::Dense => {
                let v = self.embed_query(&req.query).await?;
                Ok(self
                    .library
                    .search_fused_filtered(
                        &req.query,
                        Some(&v),
                        SearchMode::Dense,
                        k,
                        fusion,
                        filter,
                    )
                    .await?)
            }
            SearchMode::Hybrid => {
                let depth = k.max(lectern_index::FUSION_DEPTH);
                let (dense, bm25) = tokio::try_join!(
                    async {
                        let v = self.embed_query(&req.query).await?;
                        Ok::<_, EngineError>(
                            self.library
                                .search_dense_filtered(&v, depth, filter)
                                .await?,
                        )
                    },
                    async {
                        self.library
                            .search_bm25_filtered(&req.query, depth, filter)
                            .await
                            .map_err(EngineError::from)
                    }
                )?;
                Ok(lectern_index::fuse(bm25, dense, fusion, k))
            }
        }
    }

    /// Path of the default language model, if one is configured.
    pub fn default_llm(&self) -> Option<PathBuf> {
        self.config.llm_path.clone()
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
