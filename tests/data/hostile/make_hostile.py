#!/usr/bin/env python3
"""Writes the hostile GGUF corpus in this folder (plain Python, no deps).

Every file must be refused by `g4 inspect` with exit code 1 and a one-line
`error: FILE: offset N: …` message; `good.gguf` must be accepted. The cases
follow public GGUF parser reports (huge counts/lengths, n_dims, overflowing
dimension products and offsets, unknown types, alignment, overlap, dups)."""
import os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
u32 = lambda v: struct.pack("<I", v & 0xFFFFFFFF)
u64 = lambda v: struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)
gstr = lambda s: u64(len(s)) + (s if isinstance(s, bytes) else s.encode())

def kv_u32(k, v): return gstr(k) + u32(4) + u32(v)
def kv_str(k, s): return gstr(k) + u32(8) + gstr(s)
def kv_arr(k, et, n, payload): return gstr(k) + u32(9) + u32(et) + u64(n) + payload
def tinfo(name, dims, typ, off): return gstr(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(typ) + u64(off)

def gguf(kvs, tis, data=b"", version=3, n_kv=None, n_t=None, align=32, pad=True):
    head = b"GGUF" + u32(version) + u64(len(tis) if n_t is None else n_t) + u64(len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tis)
    if pad:
        body += b"\0" * ((align - len(body) % align) % align)
    return body + data

good_kvs = [kv_str("general.architecture", "test"), kv_u32("test.n", 7),
            kv_arr("test.arr", 5, 3, struct.pack("<3i", 1, -2, 3))]
good_tis = [tinfo("a.weight", [32, 2], 0, 0), tinfo("b.weight", [32, 1], 8, 256)]
good_data = b"\x00" * 256 + b"\x00" * 34
cases = {
    "good": gguf(good_kvs, good_tis, good_data),
    "empty": b"",
    "short_magic": b"GGU",
    "bad_magic": b"GGML" + u32(3) + u64(0) + u64(0),
    "version1": b"GGUF" + u32(1) + u32(0) + u32(0),
    "version4": b"GGUF" + u32(4) + u64(0) + u64(0),
    "big_endian": b"GGUF" + struct.pack(">I", 3) + u64(0) + u64(0),
    "trunc_counts": b"GGUF" + u32(3) + u64(0),
    "huge_n_kv": b"GGUF" + u32(3) + u64(0) + u64(1 << 62),
    "huge_n_tensors": b"GGUF" + u32(3) + u64((1 << 64) - 1) + u64(0),
    "key_len_huge": gguf([u64((1 << 64) - 1) + b"abc" + b"\0" * 32], [], n_kv=1, pad=False),
    "key_len_past_eof": gguf([u64(1000) + b"abc" + u32(4) + u32(1)], [], n_kv=1, pad=False),
    "key_empty": gguf([gstr("") + u32(4) + u32(1)], []),
    "key_nul": gguf([gstr(b"a\0b") + u32(4) + u32(1)], []),
    "value_type_bad": gguf([gstr("k") + u32(13) + u32(1)], []),
    "value_type_huge": gguf([gstr("k") + u32(0xFFFFFFFF) + u32(1)], []),
    "value_truncated": gguf([gstr("k") + u32(10) + b"\1\2\3"], [], pad=False),
    "string_len_huge": gguf([gstr("k") + u32(8) + u64(1 << 63) + b"xx"], [], pad=False),
    "bool_value_2": gguf([gstr("k") + u32(7) + b"\x02"], []),
    "arr_elem_type_bad": gguf([kv_arr("k", 77, 1, b"\0")], []),
    "arr_n_past_eof": gguf([kv_arr("k", 0, 1 << 40, b"\0" * 8)], [], pad=False),
    "arr_n_mul_overflow": gguf([kv_arr("k", 10, (1 << 61) + 1, b"\0" * 8)], [], pad=False),
    "arr_str_n_huge": gguf([kv_arr("k", 8, (1 << 64) - 1, gstr("a"))], [], pad=False),
    "arr_str_elem_len_huge": gguf([kv_arr("k", 8, 2, gstr("a") + u64(1 << 60))], [], pad=False),
    "arr_nested_too_deep": gguf([gstr("k") + u32(9) + (u32(9) + u64(1)) * 12 + u32(4) + u64(1) + u32(5)], []),
    "arr_nested_n_huge": gguf([kv_arr("k", 9, 1 << 59, u32(4) + u64(0))], [], pad=False),
    "arr_bool_bad": gguf([kv_arr("k", 7, 3, b"\x00\x01\x05")], []),
    "dup_key": gguf([kv_u32("a", 1), kv_u32("a", 2)], []),
    "align_zero": gguf([kv_u32("general.alignment", 0)], []),
    "align_not_pow2": gguf([kv_u32("general.alignment", 48)], []),
    "align_huge": gguf([kv_u32("general.alignment", 1 << 31)], []),
    "align_wrong_type": gguf([kv_str("general.alignment", "32")], []),
    "tensor_name_huge": gguf([], [u64(1 << 62) + b"ab" + b"\0" * 64], n_t=1, pad=False),
    "tensor_name_empty": gguf([], [tinfo("", [32], 0, 0)], b"\0" * 128),
    "tensor_ndims_0": gguf([], [tinfo("t", [], 0, 0)], b"\0" * 128),
    "tensor_ndims_5": gguf([], [gstr("t") + u32(5) + u64(1) * 5 + u32(0) + u64(0)], b"\0" * 128),
    "tensor_ndims_huge": gguf([], [gstr("t") + u32(0xFFFFFFFF) + u64(1) + u32(0) + u64(0)], b"\0" * 128),
    "tensor_dim_negative": gguf([], [tinfo("t", [(1 << 64) - 32], 0, 0)], b"\0" * 128),
    "tensor_dims_overflow": gguf([], [tinfo("t", [1 << 32, 1 << 32, 1 << 32], 0, 0)], b"\0" * 128),
    "tensor_bytes_overflow": gguf([], [tinfo("t", [1 << 40, 1 << 22], 0, 0)], b"\0" * 128),
    "tensor_type_removed": gguf([], [tinfo("t", [32], 4, 0)], b"\0" * 128),
    "tensor_type_huge": gguf([], [tinfo("t", [32], 0xFFFFFFFF, 0)], b"\0" * 128),
    "tensor_partial_block": gguf([], [tinfo("t", [31, 2], 2, 0)], b"\0" * 128),
    "tensor_offset_unaligned": gguf([], [tinfo("t", [8], 0, 4)], b"\0" * 128),
    "tensor_offset_past_eof": gguf([], [tinfo("t", [8], 0, 1 << 20)], b"\0" * 128),
    "tensor_offset_wraps": gguf([], [tinfo("t", [8], 0, (1 << 64) - 32)], b"\0" * 128),
    "tensor_size_past_eof": gguf([], [tinfo("t", [1024], 0, 0)], b"\0" * 128),
    "tensor_overlap": gguf([], [tinfo("a", [32], 0, 0), tinfo("b", [32], 0, 64)], b"\0" * 256),
    "tensor_dup_name": gguf([], [tinfo("a", [8], 0, 0), tinfo("a", [8], 0, 32)], b"\0" * 64),
    "tensor_data_missing": gguf([], [tinfo("a", [8], 0, 0)], b"", pad=False),
    "tensor_info_truncated": gguf([], [gstr("t") + u32(2) + u64(8)], n_t=1, pad=False),
}
# truncations of the good file at every structure boundary
g = cases["good"]
marks = {"t_header": 10, "t_n_kv": 20, "t_first_key": 30, "t_first_value": 60,
         "t_array": 110, "t_tensor_infos": len(g) - 300, "t_tensor_data": len(g) - 10}
for name, cut in marks.items():
    cases[name] = g[:cut]
for name, data in cases.items():
    with open(os.path.join(HERE, name + ".gguf"), "wb") as f:
        f.write(data)
print(len(cases), "files")
