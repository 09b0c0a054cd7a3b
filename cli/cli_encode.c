/* g4 encode --mmproj MMPROJ.gguf (--image F | --audio F)… [--out EMB.bin]
 *           [--image-min-tokens N] [--image-max-tokens N] [--threads N] [--json]
 * Runs the vision / audio tower in this process and writes the soft-token
 * embeddings: int32 rows, int32 cols, then float32[rows][cols] (the layout of
 * llama.cpp's MTMD_DEBUG_EMBEDDINGS dump); several media are concatenated in
 * the order given. Prints one line per medium (or a JSON object). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_args.h"
#include "enc_encode.h"
#include "g4_alloc.h"
#include "g4_clock.h"
#include "g4_matmul.h"

#define MAX_MEDIA 64

int cli_encode(int argc, char **argv)
{
    const char *mmproj = NULL, *out = NULL, *files[MAX_MEDIA];
    int kinds[MAX_MEDIA], n_media = 0, json = 0, threads = 0;
    enc_opts_t o = {0, 0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mmproj") && i + 1 < argc) mmproj = argv[++i];
        else if ((!strcmp(argv[i], "--image") || !strcmp(argv[i], "--audio")) && i + 1 < argc) {
            if (n_media == MAX_MEDIA) {
                cli_error("at most %d media", MAX_MEDIA);
                return 2;
            }
            kinds[n_media] = argv[i][2] == 'i' ? G4_MEDIA_IMAGE : G4_MEDIA_AUDIO;
            files[n_media++] = argv[++i];
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--image-min-tokens") && i + 1 < argc) o.image_min_tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--image-max-tokens") && i + 1 < argc) o.image_max_tokens = atoi(argv[++i]);
        else if ((!strcmp(argv[i], "--threads") || !strcmp(argv[i], "-t")) && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else return cli_bad_option("encode", argv[i]);
    }
    if (!mmproj || !n_media) {
        cli_error("usage: g4 encode --mmproj MMPROJ.gguf (--image FILE | --audio FILE)... (see g4 encode --help)");
        return 2;
    }
    if (threads > 0) g4_kernels_set_threads(threads);
    g4_err_t err;
    enc_model_t *m = enc_model_load(mmproj, &err);
    if (!m) {
        cli_error("%s", err.msg);
        return 1;
    }
    FILE *f = NULL;
    if (out && !(f = fopen(out, "wb"))) {
        cli_error("%s: %s", out, strerror(errno));
        enc_model_destroy(&m);
        return 1;
    }
    int32_t rows = 0, cols = 0;
    if (f) fwrite(&rows, 4, 1, f), fwrite(&cols, 4, 1, f);
    cJSON *arr = cJSON_CreateArray();
    int rc = 0;
    for (int i = 0; i < n_media && !rc; i++) {
        size_t len;
        char *data = cli_read_file(files[i], &len);
        if (!data) {
            cli_error("%s: %s", files[i], strerror(errno));
            rc = 1;
            break;
        }
        float *emb;
        int nt, ne;
        const double t0 = (g4_clock_mono_s() * 1e3);
        if (enc_encode(m, kinds[i], (const uint8_t *)data, len, &o, &emb, &nt, &ne, &err)) {
            cli_error("%s: %s", files[i], err.msg);
            g4_free(data);
            rc = 1;
            break;
        }
        const double ms = (g4_clock_mono_s() * 1e3) - t0;
        g4_free(data);
        if (cols && ne != cols) {
            cli_error("%s: width %d differs from the previous media (%d)", files[i], ne, cols);
            free(emb);
            rc = 1;
            break;
        }
        cols = ne;
        rows += nt;
        if (f && fwrite(emb, 4, (size_t)nt * ne, f) != (size_t)nt * ne) {
            cli_error("%s: %s", out, strerror(errno));
            rc = 1;
        }
        free(emb);
        if (json) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "file", files[i]);
            cJSON_AddStringToObject(e, "kind", kinds[i] == G4_MEDIA_IMAGE ? "image" : "audio");
            cJSON_AddNumberToObject(e, "n_tokens", nt);
            cJSON_AddNumberToObject(e, "n_embd", ne);
            cJSON_AddNumberToObject(e, "ms", ms);
            cJSON_AddItemToArray(arr, e);
        } else {
            printf("%s: %s, %d soft tokens x %d (%.0f ms)\n", files[i], kinds[i] == G4_MEDIA_IMAGE ? "image" : "audio",
                   nt, ne, ms);
        }
    }
    if (f) {
        if (!rc && (fseek(f, 0, SEEK_SET) || fwrite(&rows, 4, 1, f) != 1 || fwrite(&cols, 4, 1, f) != 1)) {
            cli_error("%s: %s", out, strerror(errno));
            rc = 1;
        }
        if (fclose(f) && !rc) {
            cli_error("%s: %s", out, strerror(errno));
            rc = 1;
        }
    }
    if (json && !rc) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddItemToObject(root, "media", arr);
        cJSON_AddNumberToObject(root, "n_tokens", rows);
        cJSON_AddNumberToObject(root, "n_embd", cols);
        if (out) cJSON_AddStringToObject(root, "out", out);
        char *s = cJSON_PrintUnformatted(root);
        puts(s);
        free(s);
        cJSON_Delete(root);
    } else {
        cJSON_Delete(arr);
    }
    enc_model_destroy(&m);
    return rc;
}
