#!/usr/bin/env python3
"""Reference sentence embeddings of all-MiniLM-L6-v2 computed by sentence-transformers.

Lectern's embedder is checked against this fixture
(crates/models/tests/embed_reference.rs): cosine similarity of at least 0.999 per text.
The texts cover a short phrase, a long passage that is truncated at 256 tokens,
punctuation, digits and non-ASCII letters.

Usage (with the sentence-transformers environment of shared/bench/peer.sh):
  ~/.cache/lectern-peers/venv/bin/python models/golden_minilm.py \\
      --model-dir ~/.cache/lectern/models/all-MiniLM-L6-v2 \\
      --out crates/models/tests/fixtures/minilm_reference.json
"""
import argparse
import json

TEXTS = [
    "A cat sits on the mat.",
    "Quarterly revenue grew by 8.5% to $1.2bn, driven by cloud services (see Table 3).",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein; naïve café owners disagree.",
    "Retrieval augmented generation grounds answers in documents. " * 40,
    "Mitochondrial DNA mutations accumulate with age in human skeletal muscle fibres.",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(a.model_dir, device="cpu")
    m.max_seq_length = 256
    vecs = m.encode(TEXTS, normalize_embeddings=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(
            {"texts": TEXTS, "vectors": [[round(float(x), 7) for x in v] for v in vecs]},
            f,
        )
        f.write("\n")


if __name__ == "__main__":
    main()
