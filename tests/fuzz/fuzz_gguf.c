/* libFuzzer target for the GGUF reader: parse, then touch every value,
 * every array element (bounded) and the first row of every tensor.
 *   cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DG4_FUZZ=ON && cmake --build build-fuzz --target fuzz_gguf
 *   ./build-fuzz/tests/fuzz_gguf tests/data/hostile -max_total_time=60 */
#include <stdint.h>
#include <stdlib.h>

#include "g4_alloc.h"
#include "g4_gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g4_err_t err;
    g4_gguf_t *g = g4_gguf_open_mem(data, size, "fuzz", &err);
    if (!g) return 0;
    for (int64_t i = 0; i < g4_gguf_n_kv(g); i++) {
        g4_gguf_value_t v, e, e2;
        g4_gguf_kv_value(g, i, &v);
        if (v.type != G4_GGUF_ARRAY) continue;
        for (uint64_t j = 0; j < v.arr_n && j < 256; j++) {
            g4_gguf_arr_get(g, &v, j, &e);
            if (e.type == G4_GGUF_ARRAY)
                for (uint64_t k = 0; k < e.arr_n && k < 16; k++) g4_gguf_arr_get(g, &e, k, &e2);
        }
    }
    for (int64_t i = 0; i < g4_gguf_n_tensors(g); i++) {
        g4_tensor_t t;
        g4_gguf_tensor(g, i, &t);
        if (t.ne[0] > 0 && t.ne[0] <= 4096 && g4_tensor_nrows(&t) > 0 && g4_dtype_traits(t.dtype)->computable) {
            float *row = g4_malloc((size_t)t.ne[0] * sizeof(float));
            if (row) g4_dequant_row(t.dtype, t.data, row, t.ne[0]);
            g4_free(row);
        }
    }
    g4_gguf_destroy(&g);
    return 0;
}
