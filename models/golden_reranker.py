#!/usr/bin/env python3
"""Reference cross-encoder scores of the tiny rerankers computed by Hugging Face transformers.

Lectern's reranker is checked against this fixture
(crates/models/tests/rerank.rs): the logit of every (query, passage) pair within
1e-4, for the BERT (`tiny-reranker`) and XLM-RoBERTa (`tiny-reranker-xlmr`)
families, at the default 512-token limit and truncated to 24 tokens (longest
first, as transformers' `truncation=True` does). The token ids are stored too.

Usage (with the sentence-transformers environment of shared/bench/peer.sh, which
has torch and transformers):
  ~/.cache/lectern-peers/venv/bin/python models/golden_reranker.py \\
      --models-dir ~/.cache/lectern/models \\
      --out crates/models/tests/fixtures/tiny_reranker_golden.json
"""
import argparse
import json

QUERIES = [
    "what causes muscle fibre ageing?",
    "Quarterly revenue in 2024",
]

PASSAGES = [
    "Mitochondrial DNA mutations accumulate with age in human skeletal muscle fibres.",
    "Quarterly revenue grew by 8.5% to $1.2bn, driven by cloud services (see Table 3).",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein; naïve café owners disagree.",
    "A cat sits on the mat.",
    "Retrieval augmented generation grounds answers in documents. " * 40,
]

MODELS = {
    "tiny-reranker": "BertForSequenceClassification",
    "tiny-reranker-xlmr": "XLMRobertaForSequenceClassification",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import torch
    import transformers
    from transformers import PreTrainedTokenizerFast

    torch.set_grad_enabled(False)
    cases = []
    for name, arch in MODELS.items():
        path = f"{a.models_dir}/{name}"
        model = getattr(transformers, arch).from_pretrained(path, torch_dtype=torch.float32).eval()
        tok = PreTrainedTokenizerFast(tokenizer_file=f"{path}/tokenizer.json")
        for max_length in (512, 24):
            for q in QUERIES:
                for p in PASSAGES:
                    enc = tok(q, p, truncation=True, max_length=max_length, return_token_type_ids=True)
                    ids = torch.tensor([enc["input_ids"]])
                    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
                    if arch.startswith("Bert"):
                        kwargs["token_type_ids"] = torch.tensor([enc["token_type_ids"]])
                    logit = model(**kwargs).logits[0, 0].item()
                    cases.append({
                        "model": name,
                        "max_length": max_length,
                        "query": q,
                        "passage": p,
                        "input_ids": enc["input_ids"],
                        "logit": logit,
                    })
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
