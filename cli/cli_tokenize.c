/* g4 tokenize -m MODEL.gguf [--no-bos] [--no-special] (-p TEXT | -f FILE) [--json]
 * g4 detokenize -m MODEL.gguf [--special] [--stream] [--json] ID…
 *   (--stream: through the incremental detokenizer; --json adds its chunks)
 * Prints the ids as a JSON list (with --json: ids and pieces). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_args.h"
#include "g4_alloc.h"
#include "g4_gguf.h"
#include "tok_stream.h"
#include "tok_vocab.h"

static tok_vocab_t *s_open(const char *model, g4_gguf_t **g)
{
    g4_err_t err;
    *g = g4_gguf_open(model, &err);
    if (!*g) {
        cli_error("%s", err.msg);
        return NULL;
    }
    tok_vocab_t *v = tok_vocab_load(*g, &err);
    if (!v) cli_error("%s", err.msg);
    return v;
}

int cli_tokenize(int argc, char **argv)
{
    const char *model = NULL, *text = NULL, *file = NULL;
    int bos = 1, special = 1, json = 0;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) model = argv[++i];
        else if ((!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt")) && i + 1 < argc) text = argv[++i];
        else if ((!strcmp(argv[i], "-f") || !strcmp(argv[i], "--file")) && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "--no-bos")) bos = 0;
        else if (!strcmp(argv[i], "--no-special")) special = 0;
        else if (!strcmp(argv[i], "--json")) json = 1;
        else return cli_bad_option("tokenize", argv[i]);
    }
    if (!model || (!text && !file)) {
        cli_error("usage: g4 tokenize -m MODEL.gguf [--no-bos] [--no-special] (-p TEXT | -f FILE) [--json]");
        return 2;
    }
    size_t len;
    char *buf;
    const char *in = cli_input(file, text, &len, &buf);
    if (!in) return 1;
    g4_gguf_t *g;
    tok_vocab_t *v = s_open(model, &g);
    int rc = 1;
    int32_t *ids = NULL;
    int n = 0;
    g4_err_t err;
    if (v && !tok_vocab_tokenize(v, in, len, bos, special, &ids, &n, &err)) {
        cJSON *arr = cJSON_CreateArray();
        for (int i = 0; i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
        cJSON *root = arr;
        if (json) {
            root = cJSON_CreateObject();
            cJSON_AddItemToObject(root, "ids", arr);
            cJSON *pieces = cJSON_AddArrayToObject(root, "pieces");
            for (int i = 0; i < n; i++) {
                char p[1024];
                int l = tok_vocab_piece(v, ids[i], p, sizeof p - 1, 1);
                p[l > 0 ? l : 0] = '\0';
                cJSON_AddItemToArray(pieces, cJSON_CreateString(p));
            }
        }
        char *s = cJSON_PrintUnformatted(root);
        if (s) puts(s);
        cJSON_free(s);
        cJSON_Delete(root);
        rc = 0;
    } else if (v) {
        cli_error("%s", err.msg);
    }
    g4_free(ids);
    g4_free(buf);
    tok_vocab_destroy(&v);
    g4_gguf_destroy(&g);
    return rc;
}

int cli_detokenize(int argc, char **argv)
{
    static const char usage[] = "usage: g4 detokenize -m MODEL.gguf [--special] [--stream] [--json] ID…";
    const char *model = NULL;
    int n = 0, cap = argc + 1, special = 0, stream = 0, json = 0;
    int32_t *ids = g4_malloc((size_t)cap * sizeof *ids);
    if (!ids) return 1;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--special")) special = 1;
        else if (!strcmp(argv[i], "--stream")) stream = 1;
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            /* ids as separate arguments or comma-separated */
            for (char *p = argv[i]; *p;) {
                char *end;
                long x = strtol(p, &end, 10);
                if (end == p || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
                    cli_error("'%s' is not a token id (%s)", argv[i], usage);
                    g4_free(ids);
                    return 2;
                }
                if (n >= cap) { /* more ids than arguments: grow */
                    int32_t *nb = g4_realloc(ids, (size_t)cap * 2 * sizeof *ids);
                    if (!nb) {
                        g4_free(ids);
                        return 1;
                    }
                    ids = nb, cap *= 2;
                }
                ids[n++] = (int32_t)x;
                p = *end ? end + 1 : end;
            }
        }
    }
    if (!model) {
        cli_error("%s", usage);
        g4_free(ids);
        return 2;
    }
    g4_gguf_t *g;
    tok_vocab_t *v = s_open(model, &g);
    int rc = 1;
    cJSON *chunks = NULL;
    if (v) {
        for (int i = 0; i < n; i++)
            if (ids[i] >= tok_vocab_size(v)) {
                cli_error("token id %d is outside the vocabulary (%d)", ids[i], tok_vocab_size(v));
                goto done;
            }
        char *s = NULL;
        size_t len = 0;
        if (stream) {
            /* one chunk per token, as a streaming client receives them */
            tok_stream_t st;
            tok_stream_init(&st, special);
            chunks = cJSON_CreateArray();
            for (int i = 0; i <= n; i++) {
                size_t before = len;
                long r = i < n ? tok_stream_feed(v, &st, ids[i], &s, &len) : tok_stream_flush(&st, &s, &len);
                if (r < 0) goto done;
                char *c = cli_json_quote(s ? s + before : "", len - before);
                if (c) cJSON_AddItemToArray(chunks, cJSON_CreateRaw(c));
                g4_free(c);
            }
        } else {
            s = tok_detokenize_text(v, ids, n, special, &len);
            if (!s) goto done;
        }
        if (json) {
            cJSON *o = cJSON_CreateObject();
            char *q = cli_json_quote(s ? s : "", len);
            if (q) cJSON_AddRawToObject(o, "text", q);
            g4_free(q);
            if (chunks) cJSON_AddItemToObject(o, "chunks", chunks), chunks = NULL;
            char *js = cJSON_PrintUnformatted(o);
            puts(js);
            cJSON_free(js);
            cJSON_Delete(o);
        } else {
            if (s) fwrite(s, 1, len, stdout);
            fputc('\n', stdout);
        }
        g4_free(s);
        rc = 0;
    }
done:
    cJSON_Delete(chunks);
    g4_free(ids);
    tok_vocab_destroy(&v);
    g4_gguf_destroy(&g);
    return rc;
}
