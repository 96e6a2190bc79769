//! Training data for engram, on the host: training examples in the formats users already have,
//! tokenized with loss masks, and deterministic batches as plain host vectors. `engram-train`
//! turns those vectors into tensors; this crate knows no tensor library.
//!
//! The pipeline has three steps:
//!
//! 1. [`read_jsonl`] (or [`parse_jsonl`]) reads one [`Example`] per line: a chat
//!    (`{"messages": [{"role": "user", "content": "..."}, ...]}`) or a plain text
//!    (`{"text": "..."}`). Every error names the file and the 1-based line.
//! 2. [`tokenize_example`] (or [`tokenize_examples`] for a whole list) renders a chat with the
//!    model's [`ChatTemplate`](engram_tokenizer::ChatTemplate) and marks the tokens of the
//!    assistant turns as training targets; a text trains on every token but the first.
//! 3. [`Batcher`] lays the [`TokenizedExample`]s out in rows (one per row, or several packed into
//!    one), visits the rows in a seeded order per epoch, and hands out [`HostBatch`]es: tokens,
//!    RoPE positions, padding and segment masks, next-token targets and their loss mask, all
//!    row-major `[batch * seq]`.
//!
//! ```no_run
//! use std::path::Path;
//! use engram_data::{read_jsonl, tokenize_examples, BatchConfig, Batcher};
//! use engram_tokenizer::Tokenizer;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tokenizer = Tokenizer::from_file("model/tokenizer.json")?;
//! let template = tokenizer.chat_template().expect("the model ships a chat template");
//! let examples = read_jsonl(Path::new("facts.jsonl"))?;
//! let tokenized = tokenize_examples(&tokenizer, template, &examples, 512)?;
//! let config = BatchConfig {
//!     batch_size: 8,
//!     max_len: 512,
//!     packing: true,
//!     seed: 42,
//!     pad_id: tokenizer.pad_id().unwrap_or(0),
//! };
//! let batcher = Batcher::new(tokenized.examples, config)?;
//! for epoch in 0..3 {
//!     for i in 0..batcher.batches_per_epoch() {
//!         let batch = batcher.batch(epoch, i);
//!         // ... make tensors of batch.tokens, batch.targets, ... and take a step
//!         # let _ = batch;
//!     }
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod batch;
mod error;
mod example;
mod tokenize;

pub use batch::{BatchConfig, Batcher, HostBatch};
pub use error::DataError;
pub use example::{Example, line_of_example, parse_jsonl, read_jsonl};
pub use tokenize::{TokenizedDataset, TokenizedExample, tokenize_example, tokenize_examples};
