#!/usr/bin/env python3
"""Regenerates tests/data/mm-text96.gguf: a tiny Gemma-4-architecture text model
whose width (96) matches the projector of ../shared/testdata/mm/mmproj-gemma4-e2b-tiny-f32.gguf,
with a vocabulary that has the media tokens, so an image or audio prompt runs end to end.

  LLAMACPP_SRC=/tmp/llamacpp-src /usr/bin/python3 tests/data/make_mm_model.py SHARED_DIR

Vocabulary: the first 4096 Gemma 4 tokens (real ids: control tokens, bytes), every
single-character token below U+2000 and U+2581, and <|image|> <|image> <image|>
<|audio|> <|audio> <audio|> (renumbered after them), with the merges inside that set and
the real chat template. Weights: ../shared/tools/oracle/make_model.py, tiny-dense, F16, seed 11.
"""
import os, subprocess, sys, tempfile
sys.path.insert(0, os.path.join(os.environ.get("LLAMACPP_SRC", "/tmp/llamacpp-src"), "gguf-py"))
from gguf import GGUFReader, GGUFWriter

shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../../shared")
N = 4096
r = GGUFReader(os.path.join(shared, "testdata/vocab/ggml-vocab-gemma-4.gguf"))
f = r.fields
toks = [bytes(f['tokenizer.ggml.tokens'].parts[i]).decode('utf-8') for i in f['tokenizer.ggml.tokens'].data]
scores = [float(f['tokenizer.ggml.scores'].parts[i][0]) for i in f['tokenizer.ggml.scores'].data]
types = [int(f['tokenizer.ggml.token_type'].parts[i][0]) for i in f['tokenizer.ggml.token_type'].data]
media = ["<|image|>", "<|image>", "<image|>", "<|audio|>", "<|audio>", "<audio|>"]
keep = list(range(N)) + [i for i, t in enumerate(toks) if i >= N and len(t) == 1 and (ord(t) < 0x2000 or t == '\u2581') and types[i] == 1]
keep += [toks.index(m) for m in media]
kt = [toks[i] for i in keep]
have = set(kt)
merges = []
for i in f['tokenizer.ggml.merges'].data:
    m = bytes(f['tokenizer.ggml.merges'].parts[i]).decode('utf-8')
    k = m.find(' ', 1)
    a, b = m[:k], m[k + 1:]
    if a in have and b in have and (a + b) in have:
        merges.append(m)
tmp = tempfile.mkdtemp()
vocab = os.path.join(tmp, "vocab.gguf")
w = GGUFWriter(vocab, 'gemma4')
w.add_string('general.name', 'gemma4-vocab-subset-media')
w.add_string('tokenizer.ggml.model', 'gemma4')
w.add_array('tokenizer.ggml.tokens', kt)
w.add_array('tokenizer.ggml.scores', [scores[i] for i in keep])
w.add_array('tokenizer.ggml.token_type', [types[i] for i in keep])
w.add_array('tokenizer.ggml.merges', merges)
for k in ('bos', 'eos', 'unknown', 'padding', 'mask'):
    w.add_uint32('tokenizer.ggml.%s_token_id' % k, f['tokenizer.ggml.%s_token_id' % k].contents())
w.add_string('tokenizer.chat_template', f['tokenizer.chat_template'].contents())
w.add_bool('tokenizer.ggml.add_space_prefix', False)
w.add_bool('tokenizer.ggml.add_bos_token', True)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mm-text96.gguf")
subprocess.check_call([sys.executable, os.path.join(shared, "tools/oracle/make_model.py"), "-o", out,
                       "--preset", "tiny-dense", "--n-embd", "96", "--n-layer", "4", "--vocab", vocab,
                       "--dtype", "F16", "--seed", "11"], stdout=subprocess.DEVNULL)
print(out, len(kt), "tokens", len(merges), "merges")
