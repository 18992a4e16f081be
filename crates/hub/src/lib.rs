//! Lectern's model catalog and verified model downloads.
//!
//! The catalog (`models/catalog.json`, compiled in) lists the models Lectern
//! knows: embedders, language models and tokenizers, each with its Hugging
//! Face repository, the files it needs and, where known, their sizes and
//! SHA-256 digests. Models live in the models folder, one subfolder (or
//! file) per model, named by the entry's `local_path` or its id.
//!
//! [`download`] fetches a model the user asked for from the Hugging Face hub
//! (or any server speaking its protocol, such as a mirror set with
//! `HF_ENDPOINT`) through `hf-hub`, which resumes interrupted transfers. Each
//! file is reported as it progresses, checked against the catalog's size and
//! digest, and only then moved into place, so a model folder never holds a
//! partial or corrupt file. Nothing here touches the network unless
//! [`download`] is called.

mod catalog;
mod download;
mod error;

pub use catalog::{Catalog, CatalogEntry, CatalogFile, InstallState, ModelKind};
pub use download::{download, sha256_file, DownloadEvent, DownloadFn, DownloadOptions};
pub use error::HubError;
