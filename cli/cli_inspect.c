/* g4 inspect FILE.gguf [--json [--json-array]] [--tensor NAME --values N]
 *
 * Text output follows llama.cpp's gguf-dump (same columns and value
 * formatting), followed by a data-layout table (offset and bytes of each
 * tensor). --json prints one object. --tensor NAME --values N prints the
 * first N dequantized values of a tensor, one per line. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_args.h"
#include "g4_alloc.h"
#include "g4_gguf.h"

static const char *s_type_label(g4_gguf_type_t t)
{
    return g4_gguf_type_name(t);
}

/* number of UTF-8 code points; and byte length of the first k of them */
static size_t s_u8_len(const char *s, size_t n, size_t k, size_t *bytes_k)
{
    size_t cp = 0;
    *bytes_k = n;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (cp == k) *bytes_k = i;
            cp++;
        }
    }
    return cp;
}

static void s_print_scalar(FILE *out, const g4_gguf_value_t *v)
{
    char buf[64];
    switch (v->type) {
    case G4_GGUF_BOOL: fputs(v->v.u ? "True" : "False", out); break;
    case G4_GGUF_F32: case G4_GGUF_F64: cli_fmt_double(buf, sizeof buf, v->v.f); fputs(buf, out); break;
    case G4_GGUF_U8: case G4_GGUF_U16: case G4_GGUF_U32: case G4_GGUF_U64: fprintf(out, "%" PRIu64, v->v.u); break;
    case G4_GGUF_STRING: cli_print_pyrepr(out, v->str, (size_t)v->str_len); break;
    default: fprintf(out, "%" PRId64, v->v.i); break;
    }
}

/* list repr of at most `limit` elements (nested arrays recursively) */
static void s_print_list(FILE *out, const g4_gguf_t *g, const g4_gguf_value_t *arr, uint64_t limit, int depth)
{
    fputc('[', out);
    uint64_t n = arr->arr_n < limit ? arr->arr_n : limit;
    for (uint64_t i = 0; i < n; i++) {
        g4_gguf_value_t e;
        g4_gguf_arr_get(g, arr, i, &e);
        if (i) fputs(", ", out);
        if (e.type == G4_GGUF_ARRAY) s_print_list(out, g, &e, UINT64_MAX, depth + 1);
        else s_print_scalar(out, &e);
    }
    if (arr->arr_n > limit && depth == 0) fputs(", ...", out);
    fputc(']', out);
}

static void s_pretty_type(const g4_gguf_t *g, const g4_gguf_value_t *v, char *buf, size_t size)
{
    int nest = 0;
    g4_gguf_value_t cur = *v;
    while (cur.type == G4_GGUF_ARRAY) {
        nest++;
        if (cur.arr_type != G4_GGUF_ARRAY || cur.arr_n == 0) {
            g4_gguf_type_t leaf = cur.arr_type;
            snprintf(buf, size, "%.*s%s%.*s", nest, "[[[[[[[[[[", s_type_label(leaf), nest, "]]]]]]]]]]");
            return;
        }
        g4_gguf_value_t e;
        g4_gguf_arr_get(g, &cur, 0, &e);
        cur = e;
    }
    snprintf(buf, size, "%s", s_type_label(v->type));
}

static void s_dump_text(const g4_gguf_t *g)
{
    const int64_t n_kv = g4_gguf_n_kv(g), n_t = g4_gguf_n_tensors(g);
    printf("* File is LITTLE endian, script is running on a LITTLE endian host.\n");
    printf("* Dumping %" PRId64 " key/value pair(s)\n", n_kv + 3);
    printf("  %5d: %-10s | %8d | GGUF.version = %u\n", 1, "UINT32", 1, g4_gguf_version(g));
    printf("  %5d: %-10s | %8d | GGUF.tensor_count = %" PRId64 "\n", 2, "UINT64", 1, n_t);
    printf("  %5d: %-10s | %8d | GGUF.kv_count = %" PRId64 "\n", 3, "UINT64", 1, n_kv);
    for (int64_t i = 0; i < n_kv; i++) {
        g4_gguf_value_t v;
        g4_gguf_kv_value(g, i, &v);
        char pt[64];
        s_pretty_type(g, &v, pt, sizeof pt);
        uint64_t count = v.type == G4_GGUF_ARRAY ? v.arr_n : 1;
        printf("  %5" PRId64 ": %-10s | %8" PRIu64 " | %s", i + 4, pt, count, g4_gguf_key(g, i));
        fputs(" = ", stdout);
        if (v.type == G4_GGUF_STRING) {
            size_t b57;
            size_t cps = s_u8_len(v.str, (size_t)v.str_len, 57, &b57);
            if (cps > 60) {
                /* repr(content[:57] + '...') */
                char *tmp = g4_malloc(b57 + 4);
                if (tmp) {
                    memcpy(tmp, v.str, b57);
                    memcpy(tmp + b57, "...", 3);
                    cli_print_pyrepr(stdout, tmp, b57 + 3);
                    g4_free(tmp);
                }
            } else {
                cli_print_pyrepr(stdout, v.str, (size_t)v.str_len);
            }
        } else if (v.type == G4_GGUF_ARRAY) {
            s_print_list(stdout, g, &v, 6, 0);
        } else {
            s_print_scalar(stdout, &v);
        }
        fputc('\n', stdout);
    }
    printf("* Dumping %" PRId64 " tensor(s)\n", n_t);
    for (int64_t i = 0; i < n_t; i++) {
        g4_tensor_t t;
        g4_gguf_tensor(g, i, &t);
        printf("  %5" PRId64 ": %10" PRId64 " | %5" PRId64 ", %5" PRId64 ", %5" PRId64 ", %5" PRId64 " | %-7s | %s\n", i + 1,
               g4_tensor_nelements(&t), t.ne[0], t.ne[1], t.ne[2], t.ne[3], g4_dtype_name(t.dtype), t.name);
    }
    printf("* Tensor data: section at file offset %" PRIu64 ", alignment %u\n", g4_gguf_data_offset(g),
           g4_gguf_alignment(g));
    for (int64_t i = 0; i < n_t; i++) {
        g4_tensor_t t;
        g4_gguf_tensor(g, i, &t);
        printf("  %5" PRId64 ": offset %12" PRIu64 " | bytes %12" PRIu64 " | %s\n", i + 1, g4_gguf_tensor_offset(g, i),
               t.n_bytes, t.name);
    }
}

static cJSON *s_json_value(const g4_gguf_t *g, const g4_gguf_value_t *v)
{
    switch (v->type) {
    case G4_GGUF_BOOL: return cJSON_CreateBool(v->v.u != 0);
    case G4_GGUF_F32: case G4_GGUF_F64: return cJSON_CreateNumber(v->v.f);
    case G4_GGUF_U8: case G4_GGUF_U16: case G4_GGUF_U32: case G4_GGUF_U64: return cJSON_CreateNumber((double)v->v.u);
    case G4_GGUF_STRING: {
        char *s = g4_strndup(v->str, (size_t)v->str_len);
        cJSON *j = cJSON_CreateString(s ? s : "");
        g4_free(s);
        return j;
    }
    case G4_GGUF_ARRAY: {
        cJSON *a = cJSON_CreateArray();
        for (uint64_t i = 0; i < v->arr_n; i++) {
            g4_gguf_value_t e;
            g4_gguf_arr_get(g, v, i, &e);
            cJSON_AddItemToArray(a, s_json_value(g, &e));
        }
        return a;
    }
    default: return cJSON_CreateNumber((double)v->v.i);
    }
}

static void s_dump_json(const g4_gguf_t *g, const char *path, int with_arrays)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "filename", path);
    cJSON_AddStringToObject(root, "endian", "LITTLE");
    cJSON_AddNumberToObject(root, "version", g4_gguf_version(g));
    cJSON_AddNumberToObject(root, "alignment", g4_gguf_alignment(g));
    cJSON_AddNumberToObject(root, "data_offset", (double)g4_gguf_data_offset(g));
    cJSON *md = cJSON_AddObjectToObject(root, "metadata");
    for (int64_t i = 0; i < g4_gguf_n_kv(g); i++) {
        g4_gguf_value_t v;
        g4_gguf_kv_value(g, i, &v);
        cJSON *cur = cJSON_CreateObject();
        cJSON_AddNumberToObject(cur, "index", (double)i);
        cJSON_AddStringToObject(cur, "type", g4_gguf_type_name(v.type));
        if (v.type == G4_GGUF_ARRAY) {
            cJSON *types = cJSON_AddArrayToObject(cur, "array_types");
            g4_gguf_value_t c = v;
            for (;;) {
                cJSON_AddItemToArray(types, cJSON_CreateString(g4_gguf_type_name(c.arr_type)));
                if (c.arr_type != G4_GGUF_ARRAY || c.arr_n == 0) break;
                g4_gguf_value_t e;
                g4_gguf_arr_get(g, &c, 0, &e);
                c = e;
            }
            cJSON_AddNumberToObject(cur, "count", (double)v.arr_n);
            if (with_arrays) cJSON_AddItemToObject(cur, "value", s_json_value(g, &v));
        } else {
            cJSON_AddItemToObject(cur, "value", s_json_value(g, &v));
        }
        cJSON_AddItemToObject(md, g4_gguf_key(g, i), cur);
    }
    cJSON *ts = cJSON_AddObjectToObject(root, "tensors");
    for (int64_t i = 0; i < g4_gguf_n_tensors(g); i++) {
        g4_tensor_t t;
        g4_gguf_tensor(g, i, &t);
        cJSON *cur = cJSON_CreateObject();
        cJSON_AddNumberToObject(cur, "index", (double)i);
        cJSON *shape = cJSON_AddArrayToObject(cur, "shape");
        for (int d = 0; d < t.n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t.ne[d]));
        cJSON_AddStringToObject(cur, "type", g4_dtype_name(t.dtype));
        cJSON_AddNumberToObject(cur, "offset", (double)g4_gguf_tensor_offset(g, i));
        cJSON_AddNumberToObject(cur, "bytes", (double)t.n_bytes);
        cJSON_AddItemToObject(ts, t.name, cur);
    }
    char *s = cJSON_PrintUnformatted(root);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        cJSON_free(s);
    }
    cJSON_Delete(root);
}

static int s_dump_values(const g4_gguf_t *g, const char *name, long long nvals)
{
    int64_t idx = g4_gguf_find_tensor(g, name);
    if (idx < 0) {
        cli_error("%s: no tensor named '%s'", g4_gguf_path(g), name);
        return 1;
    }
    g4_tensor_t t;
    g4_gguf_tensor(g, idx, &t);
    const g4_dtype_traits_t *tr = g4_dtype_traits(t.dtype);
    if (!tr->computable) {
        cli_error("%s: tensor '%s' has type %s, which g4 cannot dequantize", g4_gguf_path(g), name, tr->name);
        return 1;
    }
    const int64_t total = g4_tensor_nelements(&t);
    if (nvals < 0 || nvals > total) nvals = total;
    const int64_t K = t.ne[0];
    float *row = g4_malloc((size_t)(K ? K : 1) * sizeof(float));
    if (!row) {
        cli_error("out of memory");
        return 1;
    }
    int64_t printed = 0;
    for (int64_t r = 0; printed < nvals; r++) {
        g4_dequant_row(t.dtype, g4_tensor_row(&t, r), row, K);
        for (int64_t j = 0; j < K && printed < nvals; j++, printed++) printf("%.9g\n", (double)row[j]);
    }
    g4_free(row);
    return 0;
}

int cli_inspect(int argc, char **argv)
{
    const char *path = NULL, *tensor = NULL;
    int json = 0, json_arr = 0;
    long long nvals = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--json-array")) json_arr = 1;
        else if (!strcmp(argv[i], "--tensor") && i + 1 < argc) tensor = argv[++i];
        else if (!strcmp(argv[i], "--values") && i + 1 < argc) {
            char *end;
            nvals = strtoll(argv[++i], &end, 10);
            if (*end || nvals < 0) {
                cli_error("--values needs a non-negative count");
                return 2;
            }
        } else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc && !path) {
            path = argv[++i]; /* as the other commands take the model */
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_bad_option("inspect", argv[i]);
        } else if (!path) path = argv[i];
        else {
            cli_error("unexpected argument '%s'", argv[i]);
            return 2;
        }
    }
    if (!path) {
        cli_error("usage: g4 inspect FILE.gguf [--json] [--tensor NAME --values N]");
        return 2;
    }
    g4_err_t err;
    g4_gguf_t *g = g4_gguf_open(path, &err);
    if (!g) {
        cli_error("%s", err.msg);
        return 1;
    }
    int rc = 0;
    if (tensor) rc = s_dump_values(g, tensor, nvals < 0 ? 16 : nvals);
    else if (json) s_dump_json(g, path, json_arr);
    else s_dump_text(g);
    g4_gguf_destroy(&g);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}
