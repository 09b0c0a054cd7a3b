/* Tests of core/gguf: writer -> reader round trip, typed getters, every
 * prefix of a valid file, allocation failure at every call, the hostile
 * corpus in tests/data/hostile, and every GGUF of the shared test data. */
#include <dirent.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "g4_alloc.h"
#include "g4_clock.h"
#include "g4_gguf.h"
#include "g4_gguf_write.h"
#include "g4_test.h"

/* A file with every value type, a nested array and three tensors. */
static int s_build(uint8_t **out, size_t *size, float *f32, uint8_t *q8)
{
    g4_err_t err;
    g4_gguf_writer_t *w = g4_gguf_writer_new(&err);
    if (!w) return -1;
    g4_gguf_writer_add_str(w, "general.architecture", "gemma4");
    g4_gguf_writer_add_u32(w, "t.u32", 4000000000u);
    g4_gguf_writer_add_i32(w, "t.i32", -7);
    g4_gguf_writer_add_u64(w, "t.u64", 1ull << 40);
    g4_gguf_writer_add_f32(w, "t.f32", 1e-6f);
    g4_gguf_writer_add_bool(w, "t.bool", 1);
    const int32_t ai[4] = {2, 1, 2, 1};
    g4_gguf_writer_add_arr(w, "t.arr_i32", G4_GGUF_I32, ai, 4);
    const uint8_t ab[3] = {1, 0, 1};
    g4_gguf_writer_add_arr(w, "t.arr_bool", G4_GGUF_BOOL, ab, 3);
    const char *strs[3] = {"<pad>", "▁hello", ""};
    g4_gguf_writer_add_arr_str(w, "t.arr_str", strs, 3);
    /* nested: [[1,2],[3]] of u8, encoded by hand */
    uint8_t nested[] = {4, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, /* u32 x2 */ 1, 0, 0, 0, 2, 0, 0, 0,
                        4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0};
    uint8_t raw[12 + sizeof nested];
    const uint32_t et = G4_GGUF_ARRAY;
    const uint64_t n = 2;
    memcpy(raw, &et, 4);
    memcpy(raw + 4, &n, 8);
    memcpy(raw + 12, nested, sizeof nested);
    g4_gguf_writer_add_raw(w, "t.nested", G4_GGUF_ARRAY, raw, sizeof raw);
    g4_gguf_writer_set_alignment(w, 64);
    const int64_t ne1[2] = {8, 4}, ne2[1] = {64}, ne3[3] = {32, 1, 2};
    g4_gguf_writer_add_tensor(w, "a.weight", G4_DTYPE_F32, 2, ne1, f32);
    g4_gguf_writer_add_tensor(w, "b.weight", G4_DTYPE_Q8_0, 1, ne2, q8);
    g4_gguf_writer_add_tensor(w, "c.weight", G4_DTYPE_F32, 3, ne3, f32);
    int rc = g4_gguf_writer_write_mem(w, out, size, &err);
    g4_gguf_writer_destroy(&w);
    return rc;
}

int test_gguf(void)
{
    float f32[64];
    for (int i = 0; i < 64; i++) f32[i] = (float)i * 0.5f - 3;
    uint8_t q8[68];
    g4_quant_row(G4_DTYPE_Q8_0, f32, q8, 64);
    uint8_t *img;
    size_t size;
    REQUIRE(s_build(&img, &size, f32, q8) == 0);
    g4_err_t err;
    g4_gguf_t *g = g4_gguf_open_mem(img, size, "mem.gguf", &err);
    REQUIRE(g != NULL);
    CHECK(g4_gguf_version(g) == 3 && g4_gguf_alignment(g) == 64 && g4_gguf_data_offset(g) % 64 == 0);
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f;
    int b;
    const char *s;
    uint64_t len;
    CHECK(g4_gguf_get_u32(g, "t.u32", &u32, &err) == 0 && u32 == 4000000000u);
    CHECK(g4_gguf_get_i64(g, "t.i32", &i64, &err) == 0 && i64 == -7);
    CHECK(g4_gguf_get_u32(g, "t.i32", &u32, &err) == G4_ERR_FORMAT && strstr(err.msg, "negative"));
    CHECK(g4_gguf_get_u64(g, "t.u64", &u64, &err) == 0 && u64 == 1ull << 40);
    CHECK(g4_gguf_get_u32(g, "t.u64", &u32, &err) == G4_ERR_FORMAT);
    CHECK(g4_gguf_get_f32(g, "t.f32", &f, &err) == 0 && f == 1e-6f);
    CHECK(g4_gguf_get_bool(g, "t.bool", &b, &err) == 0 && b == 1);
    CHECK(g4_gguf_get_str(g, "general.architecture", &s, &len, &err) == 0 && len == 6 && !memcmp(s, "gemma4", 6));
    CHECK(g4_gguf_get_u32(g, "general.architecture", &u32, &err) == G4_ERR_FORMAT);
    CHECKF(strstr(err.msg, "mem.gguf") && strstr(err.msg, "general.architecture") && strstr(err.msg, "STRING"), "%s",
           err.msg);
    CHECK(g4_gguf_get_u32(g, "missing.key", &u32, &err) == G4_ERR_FORMAT && strstr(err.msg, "missing key"));
    g4_gguf_value_t a, e;
    REQUIRE(g4_gguf_get_arr(g, "t.arr_str", &a, &err) == 0);
    CHECK(a.arr_type == G4_GGUF_STRING && a.arr_n == 3);
    g4_gguf_arr_get(g, &a, 1, &e);
    CHECK(e.type == G4_GGUF_STRING && e.str_len == strlen("▁hello") && !memcmp(e.str, "▁hello", e.str_len));
    g4_gguf_arr_get(g, &a, 2, &e);
    CHECK(e.str_len == 0);
    REQUIRE(g4_gguf_get_arr(g, "t.arr_i32", &a, &err) == 0);
    g4_gguf_arr_get(g, &a, 2, &e);
    CHECK(e.type == G4_GGUF_I32 && e.v.i == 2);
    REQUIRE(g4_gguf_get_arr(g, "t.nested", &a, &err) == 0);
    CHECK(a.arr_type == G4_GGUF_ARRAY && a.arr_n == 2);
    g4_gguf_arr_get(g, &a, 1, &e);
    CHECK(e.type == G4_GGUF_ARRAY && e.arr_n == 1);
    g4_gguf_value_t e2;
    g4_gguf_arr_get(g, &e, 0, &e2);
    CHECK(e2.type == G4_GGUF_U32 && e2.v.u == 3);
    /* tensors */
    CHECK(g4_gguf_n_tensors(g) == 3 && g4_gguf_find_tensor(g, "nope") < 0);
    g4_tensor_t t;
    g4_gguf_tensor(g, g4_gguf_find_tensor(g, "a.weight"), &t);
    CHECK(t.ne[0] == 8 && t.ne[1] == 4 && t.dtype == G4_DTYPE_F32 && !memcmp(t.data, f32, 128));
    CHECK(((uintptr_t)t.data - (uintptr_t)img) % 64 == 0);
    g4_gguf_tensor(g, g4_gguf_find_tensor(g, "b.weight"), &t);
    CHECK(t.n_bytes == 68 && !memcmp(t.data, q8, 68));
    g4_gguf_tensor(g, g4_gguf_find_tensor(g, "c.weight"), &t);
    CHECK(t.ne[2] == 2 && t.nb[1] == 128 && t.nb[2] == 128 && t.n_bytes == 256);
    g4_gguf_destroy(&g);
    CHECK(g == NULL);

    /* every proper prefix is refused with a FORMAT error naming an offset */
    int bad = 0;
    for (size_t cut = 0; cut < size; cut++) {
        g4_gguf_t *p = g4_gguf_open_mem(img, cut, "cut.gguf", &err);
        if (p || err.code != G4_ERR_FORMAT || !strstr(err.msg, "cut.gguf: offset ")) {
            if (bad++ < 3) fprintf(stderr, "prefix %zu: %s\n", cut, p ? "accepted" : err.msg);
            g4_gguf_destroy(&p);
        }
    }
    CHECKF(bad == 0, "%d prefixes not refused cleanly", bad);

    /* allocation failure at every call: NULL + NOMEM, never a crash or leak */
    int ok_seen = 0;
    for (long k = 1; k < 200 && !ok_seen; k++) {
        g4_alloc_fail_at(k);
        g4_gguf_t *p = g4_gguf_open_mem(img, size, "oom.gguf", &err);
        g4_alloc_fail_at(0);
        if (p) ok_seen = 1;
        else CHECKF(err.code == G4_ERR_NOMEM, "fail at %ld: %s", k, err.msg);
        g4_gguf_destroy(&p);
    }
    CHECK(ok_seen);
    g4_free(img);
    return 0;
}

/* Next "*.gguf" entry of d as a full path in path[]; returns its name or NULL. */
static const char *s_next_gguf(DIR *d, const char *dir, char *path, size_t size)
{
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".gguf")) continue;
        snprintf(path, size, "%s/%s", dir, de->d_name);
        return de->d_name;
    }
    return NULL;
}

int test_gguf_hostile(void)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/hostile", g4_test_datadir());
    DIR *d = opendir(dir);
    REQUIRE(d != NULL);
    int n = 0;
    char path[8192];
    for (const char *name; (name = s_next_gguf(d, dir, path, sizeof path));) {
        g4_err_t err;
        uint64_t t0 = g4_clock_mono_ns();
        g4_gguf_t *g = g4_gguf_open(path, &err);
        double ms = (double)(g4_clock_mono_ns() - t0) / 1e6;
        CHECKF(ms < 1000, "%s took %.0f ms", name, ms);
        if (!strcmp(name, "good.gguf")) {
            CHECKF(g != NULL, "good.gguf refused: %s", err.msg);
        } else {
            CHECKF(g == NULL, "%s was accepted", name);
            if (!g) {
                CHECKF(err.code == G4_ERR_FORMAT, "%s: %s", name, err.msg);
                CHECKF(strstr(err.msg, name) && strstr(err.msg, "offset ") && !strchr(err.msg, '\n'), "%s",
                       err.msg);
            }
        }
        g4_gguf_destroy(&g);
        n++;
    }
    closedir(d);
    CHECKF(n >= 40, "only %d hostile files found", n);
    /* random corruption of the good file: never a crash; accepted files stay consistent */
    snprintf(path, sizeof path, "%s/good.gguf", dir);
    FILE *fp = fopen(path, "rb");
    REQUIRE(fp);
    uint8_t buf[4096];
    size_t size = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    uint64_t rs = 42;
    for (int it = 0; it < 20000; it++) {
        uint8_t m[4096];
        memcpy(m, buf, size);
        int flips = 1 + (int)(g4_test_rand(&rs) % 4);
        for (int k = 0; k < flips; k++) m[g4_test_rand(&rs) % size] = (uint8_t)g4_test_rand(&rs);
        g4_err_t err;
        g4_gguf_t *g = g4_gguf_open_mem(m, size, "fuzz", &err);
        if (g) {
            for (int64_t i = 0; i < g4_gguf_n_kv(g); i++) {
                g4_gguf_value_t v, e;
                g4_gguf_kv_value(g, i, &v);
                if (v.type == G4_GGUF_ARRAY)
                    for (uint64_t j = 0; j < v.arr_n && j < 64; j++) g4_gguf_arr_get(g, &v, j, &e);
            }
            for (int64_t i = 0; i < g4_gguf_n_tensors(g); i++) {
                g4_tensor_t t;
                g4_gguf_tensor(g, i, &t);
                CHECK((uint8_t *)t.data + t.n_bytes <= m + size);
            }
        }
        g4_gguf_destroy(&g);
    }
    return 0;
}

int test_gguf_testdata(void)
{
    const char *td = g4_test_testdata();
    if (!td) return G4_TEST_SKIP;
    static const char *sub[] = {"models", "vocab", "mm"};
    int n = 0;
    for (int k = 0; k < 3; k++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", td, sub[k]);
        DIR *d = opendir(dir);
        if (!d) continue;
        char path[8192];
        for (const char *name; (name = s_next_gguf(d, dir, path, sizeof path));) {
            g4_err_t err;
            g4_gguf_t *g = g4_gguf_open(path, &err);
            CHECKF(g != NULL, "%s", err.msg);
            if (g) {
                const char *s;
                uint64_t len;
                CHECK(g4_gguf_get_str(g, "general.architecture", &s, &len, &err) == 0);
                /* every computable tensor's first row dequantizes to finite values */
                for (int64_t i = 0; i < g4_gguf_n_tensors(g); i++) {
                    g4_tensor_t t;
                    g4_gguf_tensor(g, i, &t);
                    if (!g4_dtype_traits(t.dtype)->computable || t.ne[0] > 1 << 20) continue;
                    float *row = g4_malloc((size_t)t.ne[0] * 4);
                    REQUIRE(row);
                    CHECK(g4_dequant_row(t.dtype, t.data, row, t.ne[0]) == 0);
                    for (int64_t j = 0; j < t.ne[0]; j++)
                        if (!isfinite(row[j])) {
                            CHECKF(0, "%s: %s has a non-finite value", name, t.name);
                            break;
                        }
                    g4_free(row);
                }
                n++;
            }
            g4_gguf_destroy(&g);
        }
        closedir(d);
    }
    CHECKF(n >= 10, "only %d GGUF files found in %s", n, td);
    return 0;
}
