#!/usr/bin/env python3
"""Regenerates tests/data/quant_llama.gguf: blocks made by llama.cpp's own quantizer.

  NLC_DIR=/tmp/nlc LLAMACPP_SRC=/tmp/llamacpp-src /usr/bin/python3 tests/data/make_quant_fixtures.py

Calls ggml_quantize_chunk() (no importance matrix: what llama-quantize runs) in the
prebuilt libggml-base.so of the oracle (node-llama-cpp, llama.cpp v0.5.0) through ctypes,
on an F32 input with awkward rows, and stores the bytes with gguf-py:

  input            F32 [256, 32]   seeded normal rows (several scales), an all-zero row,
                                   a constant row, a positive-only row, exact .5 multiples,
                                   outliers, tiny (1e-20) and huge (1e4) rows, sparse rows
  input.<TYPE>     ggml_quantize_chunk(TYPE, input) for F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1
                   Q4_K Q5_K Q6_K
"""
import ctypes, glob, os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.environ.get("LLAMACPP_SRC", "/tmp/llamacpp-src"), "gguf-py"))
from gguf import GGUFWriter, GGMLQuantizationType as Q
from gguf.quants import quantize

nlc = os.environ.get("NLC_DIR", "/tmp/nlc")
libs = glob.glob(os.path.join(nlc, "node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so"))
if not libs:
    sys.exit("libggml-base.so not found (run tools/oracle/setup.sh)")
ggml = ctypes.CDLL(libs[0])
ggml.ggml_quantize_chunk.restype = ctypes.c_size_t
ggml.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                     ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
ggml.ggml_row_size.restype = ctypes.c_size_t
ggml.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]

rng = np.random.default_rng(20261201)
R, N = 32, 256
x = rng.standard_normal((R, N)).astype(np.float32)
x[0:8] *= np.float32(0.02)
x[8:12] *= np.float32(1.0 / 64)
x[12] = 0.0
x[13] = 0.37
x[14] = np.abs(x[14]) * np.float32(0.05)
x[15] = (rng.integers(-40, 40, N) * 0.5).astype(np.float32)
x[16] *= 0.02; x[16, 7] = 3.0; x[16, 200] = -5.0
x[17] *= np.float32(1e-20)
x[18] *= np.float32(1e4)
x[19] = 0.0; x[19, ::37] = rng.standard_normal(len(range(0, N, 37))).astype(np.float32)
x[20] = -np.abs(x[20]) * np.float32(0.05)
x[21] = (rng.integers(-8, 8, N)).astype(np.float32)
x[22:26] *= np.float32(0.2)
x[26] = 0.0; x[26, :32] = 1.0          # one sub-block only
x = np.ascontiguousarray(x)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quant_llama.gguf")
w = GGUFWriter(out, "g4-fixture")
w.add_string("fixture.made_by", "ggml_quantize_chunk, llama.cpp v0.5.0 (node-llama-cpp 3.22.1 libggml-base.so)")
w.add_tensor("input", x)
for t in (Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q4_K, Q.Q5_K, Q.Q6_K):
    rs = ggml.ggml_row_size(int(t), N)
    buf = np.zeros(R * rs, dtype=np.uint8)
    n = ggml.ggml_quantize_chunk(int(t), x.ctypes.data, buf.ctypes.data, 0, R, N, None)
    assert n == R * rs
    q = buf.reshape(R, rs)
    if t in (Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1):   # gguf-py agrees with ggml here
        print(t.name, "gguf-py == ggml:", bool((quantize(x, t).view(np.uint8).reshape(R, rs) == q).all()))
    if t in (Q.F16, Q.BF16):
        w.add_tensor("input." + t.name, q.view(np.uint16).reshape(R, N), raw_shape=(R, N), raw_dtype=t)
    else:
        w.add_tensor("input." + t.name, q, raw_shape=q.shape, raw_dtype=t)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print("wrote", out, os.path.getsize(out), "bytes")
