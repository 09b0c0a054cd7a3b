/* g4 plan -m MODEL.gguf [--topology FILE.xml | --topology "SYNTHETIC"] [--shards N] [--ctx N] [--slots N] [--json]
 *
 * Prints where each shard of the model goes (g4_plan: one shard per NUMA node
 * or --shards, layers by memory bandwidth or memory, each shard's weights, KV
 * cache and whether it fits) on this machine's topology or an XML export
 * / synthetic description (g4_topo). The default stack (cli_stack.c) starts
 * its shards from the same plan (cli_plan_make). Here: parsing and printing. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_args.h"
#include "g4_alloc.h"
#include "g4_cuda.h"
#include "g4_model.h"

uint64_t cli_plan_cache_bytes(const cli_plan_t *cp, int n_shards)
{
    const unsigned long long avail = g4_mem_available();
    uint64_t need = 0;
    for (int i = 0; i < cp->plan.n_stages; i++) need += cp->plan.stages[i].total_bytes;
    if (n_shards <= 0) n_shards = cp->plan.n_stages > 0 ? cp->plan.n_stages : 1;
    if (avail == ULLONG_MAX) return (uint64_t)1 << 30; /* (unknown: what a shard takes alone) */
    return avail > need ? (avail - need) / 4 / (uint64_t)n_shards : 0;
}

static int s_make(const char *model, const char *topo_desc, const char *devices, int n_shards, int n_ctx, int n_slots,
                  cli_plan_t *out, char *why, size_t why_size);

int cli_plan_make(const char *model, const char *topo_desc, int n_shards, int n_ctx, int n_slots, cli_plan_t *out,
                  char *why, size_t why_size)
{
    return s_make(model, topo_desc, NULL, n_shards, n_ctx, n_slots, out, why, why_size);
}

int cli_plan_devices(const char *model, const char *devices, int n_ctx, int n_slots, cli_plan_t *out, char *why,
                     size_t why_size)
{
    return s_make(model, NULL, devices, 0, n_ctx, n_slots, out, why, why_size);
}

/* "cuda:0,cuda:1=24G,cpu" -> out->devs; -1 with why */
static int s_parse_devices(const char *list, cli_plan_t *out, char *why, size_t why_size)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    out->n_devs = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (out->n_devs == G4_PLAN_MAX) {
            snprintf(why, why_size, "--devices: at most %d devices", G4_PLAN_MAX);
            return -1;
        }
        char *eq = strchr(tok, '=');
        if (eq) *eq = 0;
        const int gpu = g4_device_from_name(tok);
        if (gpu < 0) {
            snprintf(why, why_size, "--devices: '%s' is neither cpu nor cuda:N", tok);
            return -1;
        }
        const int i = out->n_devs++;
        g4_device_name(gpu, out->dev_name[i], sizeof out->dev_name[i]);
        out->devs[i].gpu = gpu;
        if (eq) {
            char *end;
            double v = strtod(eq + 1, &end);
            const char u = (char)(*end | 0x20);
            v *= u == 't' ? 1099511627776.0 : u == 'g' ? 1073741824.0 : u == 'm' ? 1048576.0 : u == 'k' ? 1024.0 : 1.0;
            if (end == eq + 1 || v <= 0) {
                snprintf(why, why_size, "--devices: '%s=%s' wants a memory size such as 24G", tok, eq + 1);
                return -1;
            }
            out->devs[i].memory_bytes = (uint64_t)v, out->dev_given[i] = 1;
        } else if (gpu) {
            g4_err_t err;
            size_t fr = 0, tot = 0;
            if (g4_cu_device_info(gpu - 1, NULL, 0, &fr, &tot, &err)) {
                snprintf(why, why_size, "%s (to plan for a device this machine lacks, give its memory: %s=24G)", err.msg,
                         out->dev_name[i]);
                return -1;
            }
            out->devs[i].memory_bytes = fr > CLI_PLAN_GPU_RESERVE ? fr - CLI_PLAN_GPU_RESERVE : 1;
        } else {
            const unsigned long long avail = g4_mem_available();
            out->devs[i].memory_bytes = avail == ULLONG_MAX ? 0 : avail;
        }
    }
    if (!out->n_devs) {
        snprintf(why, why_size, "--devices: an empty list");
        return -1;
    }
    /* a device named k times (two shards on one GPU: each its own process
     * and context) gives each stage a k-th of what it has */
    int seen[G4_PLAN_MAX] = {0};
    for (int i = 0; i < out->n_devs; i++) {
        if (seen[i] || out->dev_given[i]) continue;
        int k = 0;
        for (int j = i; j < out->n_devs; j++) k += !strcmp(out->dev_name[j], out->dev_name[i]) && !out->dev_given[j];
        for (int j = i; j < out->n_devs; j++)
            if (!strcmp(out->dev_name[j], out->dev_name[i]) && !out->dev_given[j]) out->devs[j].memory_bytes /= (uint64_t)k, seen[j] = 1;
    }
    return 0;
}

static int s_make(const char *model, const char *topo_desc, const char *devices, int n_shards, int n_ctx, int n_slots,
                  cli_plan_t *out, char *why, size_t why_size)
{
    g4_err_t err;
    memset(out, 0, sizeof *out);
    g4_topo_t *topo = g4_topo_load(topo_desc, &err);
    g4_gguf_t *g = topo ? g4_gguf_open(model, &err) : NULL;
    g4_hparams_t *hp = g ? g4_malloc(sizeof *hp) : NULL;
    g4_footprint_t *fp = hp ? g4_malloc(sizeof *fp) : NULL;
    int rc = -1;
    if (!fp) {
        snprintf(why, why_size, "%s", g && (!hp || !fp) ? "out of memory" : err.msg);
        goto done;
    }
    if (g4_hparams_read(g, hp, &err)) {
        snprintf(why, why_size, "%s", err.msg);
        goto done;
    }
    g4_hparams_footprint(g, hp, n_ctx, n_slots, CLI_PLAN_UBATCH, fp);
    out->n_layer = (int)hp->n_layer;
    for (int l = 0; l < out->n_layer; l++) {
        const uint64_t b = fp->layer_kv_bytes[l] / (uint64_t)n_slots;
        if (hp->is_swa[l]) out->kv_seq_swa += b;
        else out->kv_seq_full += b;
    }
    if (hp->n_swa) out->swa_cells = (int)hp->n_swa + CLI_PLAN_UBATCH < n_ctx ? (int)hp->n_swa + CLI_PLAN_UBATCH : n_ctx;
    out->n_nodes = g4_topo_n_nodes(topo) < G4_PLAN_MAX ? g4_topo_n_nodes(topo) : G4_PLAN_MAX;
    for (int i = 0; i < out->n_nodes; i++) out->nodes[i] = *g4_topo_node(topo, i);
    const g4_plan_model_t pm = {out->n_layer, fp->layer_weight_bytes, fp->layer_kv_bytes, fp->kv_source,
                                fp->embd_bytes,  fp->head_bytes,       fp->tied_bytes, fp->stage_bytes};
    if (devices) {
        if (s_parse_devices(devices, out, why, why_size)) goto done;
        if (!g4_plan_devices(&pm, out->devs, out->n_devs, &out->plan)) {
            snprintf(why, why_size, "%d layers cannot make a stage on each of %d devices", out->n_layer, out->n_devs);
            goto done;
        }
    } else {
        g4_plan_make(&pm, out->nodes, out->n_nodes, n_shards, &out->plan);
    }
    rc = 0;
done:
    g4_free(fp), g4_free(hp);
    g4_gguf_destroy(&g);
    g4_topo_destroy(&topo);
    return rc;
}

static void s_gib(char *buf, size_t size, uint64_t b) { snprintf(buf, size, "%.2f GiB", (double)b / (1u << 30)); }

int cli_plan_default_slots(int n_ctx)
{
    const int n = n_ctx > 0 ? CLI_PLAN_SLOTS * CLI_PLAN_CTX / n_ctx : CLI_PLAN_SLOTS;
    return n < 1 ? 1 : n > CLI_PLAN_SLOTS ? CLI_PLAN_SLOTS : n;
}

int cli_plan_check_fits(const char *model, int n_shards, int n_ctx)
{
    cli_plan_t *cp = g4_malloc(sizeof *cp);
    char why[300];
    const int ctx = n_ctx > 0 ? n_ctx : CLI_PLAN_CTX;
    int rc = 0;
    if (cp && !cli_plan_make(model, NULL, n_shards, ctx, 1, cp, why, sizeof why) && !cp->plan.fits)
        for (int i = 0; i < cp->plan.n_stages && !rc; i++) {
            const g4_plan_stage_t *st = &cp->plan.stages[i];
            if (st->fits) continue;
            char w[32], k[32], t[32], m[32];
            s_gib(w, sizeof w, st->weight_bytes), s_gib(k, sizeof k, st->kv_bytes), s_gib(t, sizeof t, st->total_bytes);
            s_gib(m, sizeof m, cp->nodes[st->node].memory_bytes);
            cli_error("a context of %d positions does not fit: shard %d (layers %d-%d) needs %s of weights + %s of KV "
                      "cache = %s, NUMA node %d has %s; use a shorter --ctx (g4 plan -m %s --ctx N shows the sizes)",
                      ctx, i, st->layer_begin, st->layer_end, w, k, t, cp->nodes[st->node].os_index, m, model);
            rc = 1;
        }
    g4_free(cp);
    return rc;
}

/* a stage as JSON, appended to arr: its number, layers, bytes, fit */
static cJSON *s_stage_json(cJSON *arr, int i, const g4_plan_stage_t *st)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "shard", i);
    cJSON *ly = cJSON_AddArrayToObject(e, "layers");
    cJSON_AddItemToArray(ly, cJSON_CreateNumber(st->layer_begin));
    cJSON_AddItemToArray(ly, cJSON_CreateNumber(st->layer_end));
    cJSON_AddNumberToObject(e, "weight_bytes", (double)st->weight_bytes);
    cJSON_AddNumberToObject(e, "kv_bytes", (double)st->kv_bytes);
    cJSON_AddNumberToObject(e, "total_bytes", (double)st->total_bytes);
    cJSON_AddBoolToObject(e, "fits", st->fits);
    cJSON_AddItemToArray(arr, e);
    return e;
}

int cli_plan(int argc, char **argv)
{
    const char *model = NULL, *topo = NULL, *devices = NULL;
    int n_shards = 0, n_ctx = CLI_PLAN_CTX, n_slots = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) model = v, i++;
        else if (!strcmp(a, "--topology") && v) topo = v, i++;
        else if (!strcmp(a, "--devices") && v) devices = v, i++;
        else if (!strcmp(a, "--shards") && v) n_shards = atoi(v), i++;
        else if ((!strcmp(a, "--ctx") || !strcmp(a, "-c")) && v) n_ctx = atoi(v), i++;
        else if (!strcmp(a, "--slots") && v) n_slots = atoi(v), i++;
        else if (!strcmp(a, "--json")) json = 1;
        else return cli_bad_option("plan", a);
    }
    if (n_slots == 0) n_slots = cli_plan_default_slots(n_ctx);
    if (!model || n_ctx <= 0 || n_slots <= 0) {
        cli_error("usage: g4 plan -m MODEL.gguf [--topology FILE.xml|SYNTHETIC] [--shards N] [--devices LIST] [--json]");
        return 2;
    }
    cli_plan_t *cp = g4_malloc(sizeof *cp);
    char why[300];
    if (!cp || (devices ? cli_plan_devices(model, devices, n_ctx, n_slots, cp, why, sizeof why)
                        : cli_plan_make(model, topo, n_shards, n_ctx, n_slots, cp, why, sizeof why))) {
        cli_error("%s", cp ? why : "out of memory");
        g4_free(cp);
        return 1;
    }
    const g4_plan_t *pl = &cp->plan;
    const int L = cp->n_layer, n_nodes = cp->n_nodes, k = pl->n_stages;
    cJSON *root = cJSON_CreateObject(), *arr = NULL;
    if (json) {
        cJSON_AddStringToObject(root, "model", model);
        cJSON_AddNumberToObject(root, "n_layer", L);
        cJSON_AddNumberToObject(root, "ctx", n_ctx);
        cJSON_AddNumberToObject(root, "slots", n_slots);
        cJSON_AddNumberToObject(root, "kv_bytes_per_sequence", (double)(cp->kv_seq_full + cp->kv_seq_swa));
        cJSON_AddNumberToObject(root, "kv_bytes_per_sequence_full", (double)cp->kv_seq_full);
        cJSON_AddNumberToObject(root, "kv_bytes_per_sequence_sliding", (double)cp->kv_seq_swa);
        cJSON_AddNumberToObject(root, "numa_nodes", n_nodes);
        cJSON_AddStringToObject(root, "split", g4_plan_split_name(pl->split));
        cJSON_AddNumberToObject(root, "prefix_cache_bytes_per_shard", (double)cli_plan_cache_bytes(cp, k));
        if (devices) cJSON_AddStringToObject(root, "devices", devices);
        arr = cJSON_AddArrayToObject(root, "shards");
    } else {
        printf("model %s: %d layers; %d NUMA node(s); KV cache F16 for %d slot(s) x %d positions\n", model, L, n_nodes,
               n_slots, n_ctx);
        char kf[32], ks[32], kt[32];
        s_gib(kf, sizeof kf, cp->kv_seq_full), s_gib(ks, sizeof ks, cp->kv_seq_swa);
        s_gib(kt, sizeof kt, cp->kv_seq_full + cp->kv_seq_swa);
        printf("KV cache of one sequence of %d positions: %s (full-attention layers %s; sliding-window layers %s: "
               "%d cells each)\n", n_ctx, kt, kf, ks, cp->swa_cells);
        char pc[32];
        s_gib(pc, sizeof pc, cli_plan_cache_bytes(cp, k));
        printf("prefix cache per shard (the default --cache-mb): %s, a quarter of the memory available beside the "
               "shards\n", pc);
        if (devices)
        {
            int n_cpu = 0;
            for (int i = 0; i < cp->n_devs; i++) n_cpu += !cp->devs[i].gpu;
            printf("devices %s: %s\n", devices,
                   k < cp->n_devs ? "the GPUs hold every layer (the CPU is left out)"
                   : n_cpu        ? "each GPU takes the layers that fit, the CPU the rest"
                                  : "layers in proportion to the GPUs' memory");
        }
        else if (pl->split != G4_PLAN_SPLIT_SINGLE)
            printf("layers split in proportion to each node's %s\n",
                   pl->split == G4_PLAN_SPLIT_BANDWIDTH ? "memory bandwidth" : "memory");
        if (devices)
            printf("%-6s %-12s %-8s %12s %12s %12s %12s  %s\n", "SHARD", "DEVICE", "LAYERS", "WEIGHTS", "KV", "TOTAL",
                   "DEVICE MEM", "FITS");
        else
            printf("%-6s %-5s %-6s %-8s %12s %12s %12s %12s  %s\n", "SHARD", "NODE", "CORES", "LAYERS", "WEIGHTS", "KV",
                   "TOTAL", "NODE MEM", "FITS");
    }
    for (int i = 0; i < k; i++) {
        const g4_plan_stage_t *st = &pl->stages[i];
        if (devices) { /* a stage per device */
            const int di = st->node;
            if (json) {
                cJSON *e = s_stage_json(arr, i, st);
                cJSON_AddStringToObject(e, "device", cp->dev_name[di]);
                cJSON_AddNumberToObject(e, "device_memory_bytes", (double)cp->devs[di].memory_bytes);
            } else {
                char a[32], b[32], c[32], d[32], ly[24];
                s_gib(a, sizeof a, st->weight_bytes), s_gib(b, sizeof b, st->kv_bytes), s_gib(c, sizeof c, st->total_bytes);
                s_gib(d, sizeof d, cp->devs[di].memory_bytes);
                snprintf(ly, sizeof ly, "%d-%d", st->layer_begin, st->layer_end);
                printf("%-6d %-12s %-8s %12s %12s %12s %12s  %s\n", i, cp->dev_name[di], ly, a, b, c,
                       cp->devs[di].memory_bytes ? d : "?", st->fits ? "yes" : "NO");
            }
            continue;
        }
        const g4_topo_node_t *nd = &cp->nodes[st->node];
        if (json) {
            cJSON *e = s_stage_json(arr, i, st);
            cJSON_AddNumberToObject(e, "numa_node", nd->os_index);
            cJSON_AddNumberToObject(e, "cores", nd->n_cores);
            cJSON_AddNumberToObject(e, "node_memory_bytes", (double)nd->memory_bytes);
            cJSON_AddNumberToObject(e, "node_bandwidth_mbs", (double)nd->bandwidth_mbs);
        } else {
            char a[32], b[32], c[32], d[32], ly[24];
            s_gib(a, sizeof a, st->weight_bytes), s_gib(b, sizeof b, st->kv_bytes), s_gib(c, sizeof c, st->total_bytes);
            s_gib(d, sizeof d, nd->memory_bytes);
            snprintf(ly, sizeof ly, "%d-%d", st->layer_begin, st->layer_end);
            printf("%-6d %-5d %-6d %-8s %12s %12s %12s %12s  %s\n", i, nd->os_index, nd->n_cores, ly, a, b, c, d,
                   st->fits ? "yes" : "NO");
        }
    }
    if (json) {
        cJSON_AddBoolToObject(root, "fits", pl->fits);
        if (!pl->fits) cli_json_add_error(root, "some shards do not fit: use more shards, a shorter --ctx or fewer --slots", 1);
        char *str = cJSON_PrintUnformatted(root);
        puts(str);
        cJSON_free(str);
    } else if (!pl->fits) {
        printf("some shards do not fit: use more shards, a shorter --ctx or fewer --slots\n");
    }
    const int fits = pl->fits;
    cJSON_Delete(root);
    g4_free(cp);
    return fits ? 0 : 1; /* scripts can test it: a plan that does not fit is a failure */
}
