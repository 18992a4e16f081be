use lectern_ingest::*;
use std::path::Path;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let chunker = Chunker::from_tokenizer_file(Path::new(&format!("{}/.cache/lectern/models/all-MiniLM-L6-v2/tokenizer.json", std::env::var("HOME").unwrap())), ChunkConfig { max_tokens: args[2].parse().unwrap(), overlap_tokens: args[3].parse().unwrap() }).unwrap();
    let doc = parse_file(Path::new(&args[1])).unwrap();
    let chunks = chunker.chunk(&doc);
    let from: usize = args[4].parse().unwrap();
    let to: usize = args[5].parse().unwrap();
    for c in &chunks[from..to] {
        println!("=== #{} page={:?} chars {}..{} tokens {} path {:?}\n{:?}", c.ordinal, c.page, c.char_start, c.char_end, c.token_count, c.heading_path, c.text);
    }
}
