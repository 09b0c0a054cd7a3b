#!/usr/bin/env python3
"""Regenerates tests/data/quant_ref.gguf with llama.cpp's gguf-py (the oracle).

  LLAMACPP_SRC=/tmp/llamacpp-src /usr/bin/python3 tests/data/make_fixtures.py SRC_Q4_K_M.gguf SRC_Q5_K.gguf

Contents:
  input                      F32 [256, 16]  seeded normal values, with an all-zero row,
                                            a row of exact .5 multiples and a wide row
  input.Q4_0 … input.Q8_0    gguf-py's quantization of `input` (reference rounding)
  kq.Q4_K / Q5_K / Q6_K      raw blocks copied from llama.cpp-quantized models
  kq.<T>.deq                 gguf-py's dequantization of those blocks (F32)
"""
import os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.environ.get("LLAMACPP_SRC", "/tmp/llamacpp-src"), "gguf-py"))
from gguf import GGUFWriter, GGUFReader, GGMLQuantizationType as Q
from gguf.quants import quantize, dequantize

rng = np.random.default_rng(20261122)
x = rng.standard_normal((16, 256)).astype(np.float32) * 0.05
x[3] = 0.0
x[5] = (rng.integers(-40, 40, 256) * 0.5).astype(np.float32)
x[7] *= 1000.0
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quant_ref.gguf")
w = GGUFWriter(out, "g4-fixture")
w.add_tensor("input", x)
for t in (Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0):
    q = quantize(x, t)
    w.add_tensor("input." + t.name, q, raw_shape=q.shape, raw_dtype=t)
wanted = {"Q4_K": None, "Q5_K": None, "Q6_K": None}
for src in sys.argv[1:]:
    for t in GGUFReader(src).tensors:
        n = t.tensor_type.name
        if n in wanted and wanted[n] is None and t.shape[0] >= 256 and len(t.shape) >= 2:
            blocks = np.array(t.data[:2])  # two rows
            wanted[n] = (t.tensor_type, blocks)
for n, v in wanted.items():
    if v is None:
        sys.exit("no %s tensor found in the given models" % n)
    tt, blocks = v
    w.add_tensor("kq." + n, blocks, raw_shape=blocks.shape, raw_dtype=tt)
    w.add_tensor("kq." + n + ".deq", dequantize(blocks, tt).astype(np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print("wrote", out)
