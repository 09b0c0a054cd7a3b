/* gw_metrics — the gateway's counters (requests by outcome, tokens, streams,
 * latency histogram) and GET /metrics: them and the scheduler's status
 * (queue, per-stage liveness, work, restarts) as Prometheus text. */
#include <stdio.h>
#include <string.h>

#include "g4_alloc.h"
#include "gw_internal.h"

static const double s_lat_bounds[GW_LAT_BUCKETS] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

void gw_metrics_done(gw_metrics_t *m, const gw_gen_t *g)
{
    atomic_fetch_add(&m->n_prompt_tok, (unsigned long long)g->n_prompt);
    atomic_fetch_add(&m->n_gen_tok, (unsigned long long)g->n_gen);
    atomic_fetch_add(&m->n_req_ok, 1);
    gw_access_tokens(g->n_prompt, g->n_gen);
    const uint64_t ms = g4_wire_now_ms() - g->t0;
    atomic_fetch_add(&m->lat_count, 1);
    atomic_fetch_add(&m->lat_sum_ms, ms);
    for (int i = 0; i < GW_LAT_BUCKETS; i++)
        if ((double)ms / 1000.0 <= s_lat_bounds[i]) atomic_fetch_add(&m->lat_bucket[i], 1);
}

enum MHD_Result gw_metrics_reply(gw_server_t *sv, struct MHD_Connection *c)
{
    G4__V1__Envelope *owner;
    G4__V1__StatusReply *r = g4_client_status(sv->sched_ep, 1000, &owner);
    char *b = NULL;
    size_t n = 0;
    char line[512];
#define OUT(...) (snprintf(line, sizeof line, __VA_ARGS__), gw_append(&b, &n, line, strlen(line)))
    OUT("# HELP g4_http_requests_total HTTP requests by outcome.\n# TYPE g4_http_requests_total counter\n");
    OUT("g4_http_requests_total{outcome=\"ok\"} %llu\n", (unsigned long long)atomic_load(&sv->m.n_req_ok));
    OUT("g4_http_requests_total{outcome=\"client_error\"} %llu\n", (unsigned long long)atomic_load(&sv->m.n_req_4xx));
    OUT("g4_http_requests_total{outcome=\"server_error\"} %llu\n", (unsigned long long)atomic_load(&sv->m.n_req_5xx));
    OUT("# HELP g4_prompt_tokens_total Prompt tokens of completed requests.\n# TYPE g4_prompt_tokens_total counter\n");
    OUT("g4_prompt_tokens_total %llu\n", (unsigned long long)atomic_load(&sv->m.n_prompt_tok));
    OUT("# HELP g4_generated_tokens_total Generated tokens of completed requests.\n# TYPE g4_generated_tokens_total counter\n");
    OUT("g4_generated_tokens_total %llu\n", (unsigned long long)atomic_load(&sv->m.n_gen_tok));
    OUT("# HELP g4_streams_total Streaming responses started.\n# TYPE g4_streams_total counter\n");
    OUT("g4_streams_total %llu\n", (unsigned long long)atomic_load(&sv->m.n_streams));
    OUT("# HELP g4_http_active Requests being served.\n# TYPE g4_http_active gauge\ng4_http_active %d\n",
        atomic_load(&sv->m.active));
    OUT("# HELP g4_request_duration_seconds Time from request to last token.\n# TYPE g4_request_duration_seconds histogram\n");
    for (int i = 0; i < GW_LAT_BUCKETS; i++)
        OUT("g4_request_duration_seconds_bucket{le=\"%g\"} %llu\n", s_lat_bounds[i],
            (unsigned long long)atomic_load(&sv->m.lat_bucket[i]));
    OUT("g4_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)atomic_load(&sv->m.lat_count));
    OUT("g4_request_duration_seconds_sum %.3f\n", (double)atomic_load(&sv->m.lat_sum_ms) / 1000.0);
    OUT("g4_request_duration_seconds_count %llu\n", (unsigned long long)atomic_load(&sv->m.lat_count));
    if (r) {
        OUT("# HELP g4_scheduler_queue_depth Requests waiting for a sequence slot.\n# TYPE g4_scheduler_queue_depth gauge\n");
        OUT("g4_scheduler_queue_depth %d\n", r->queued_requests);
        OUT("# HELP g4_scheduler_running Requests decoding.\n# TYPE g4_scheduler_running gauge\n");
        OUT("g4_scheduler_running %d\n", r->active_requests);
        OUT("# TYPE g4_scheduler_requests_total counter\n");
        OUT("g4_scheduler_requests_total{outcome=\"done\"} %llu\n", (unsigned long long)r->requests_done);
        OUT("g4_scheduler_requests_total{outcome=\"failed\"} %llu\n", (unsigned long long)r->requests_failed);
        OUT("# HELP g4_scheduler_requests_migrated_total Requests parked when a stage was lost and resumed on a new pipeline.\n"
            "# TYPE g4_scheduler_requests_migrated_total counter\n");
        OUT("g4_scheduler_requests_migrated_total %llu\n", (unsigned long long)r->requests_migrated);
        OUT("# HELP g4_stage_restarts_total Times a daemon's name registered from a new process.\n"
            "# TYPE g4_stage_restarts_total counter\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_restarts_total{name=\"%s\"} %u\n", r->daemons[i]->name, r->daemons[i]->restarts);
        if (r->prefix_cache) {
            const G4__V1__PrefixCacheStatus *pc = r->prefix_cache;
            OUT("# HELP g4_prefix_cache_enabled The shards keep prompt prefixes for reuse.\n# TYPE g4_prefix_cache_enabled gauge\n");
            OUT("g4_prefix_cache_enabled %d\n", pc->enabled);
            OUT("# HELP g4_prefix_cache_lookups_total Requests that started from cached chunks (hit) or found none (miss).\n"
                "# TYPE g4_prefix_cache_lookups_total counter\n");
            OUT("g4_prefix_cache_lookups_total{result=\"hit\"} %llu\n", (unsigned long long)pc->hits);
            OUT("g4_prefix_cache_lookups_total{result=\"miss\"} %llu\n", (unsigned long long)pc->misses);
            OUT("# HELP g4_prompt_tokens_cached_total Prompt tokens taken from the prefix cache.\n"
                "# TYPE g4_prompt_tokens_cached_total counter\n");
            OUT("g4_prompt_tokens_cached_total %llu\n", (unsigned long long)pc->tokens_reused);
            OUT("# HELP g4_prompt_tokens_computed_total Prompt tokens the shards computed.\n"
                "# TYPE g4_prompt_tokens_computed_total counter\n");
            OUT("g4_prompt_tokens_computed_total %llu\n", (unsigned long long)pc->tokens_computed);
            OUT("# HELP g4_prefix_cache_bytes Bytes the prefix cache keeps (the stage keeping most).\n"
                "# TYPE g4_prefix_cache_bytes gauge\n");
            OUT("g4_prefix_cache_bytes %llu\n", (unsigned long long)pc->bytes);
            OUT("# HELP g4_prefix_cache_budget_bytes Bytes the prefix cache may keep (the smallest stage budget).\n"
                "# TYPE g4_prefix_cache_budget_bytes gauge\n");
            OUT("g4_prefix_cache_budget_bytes %llu\n", (unsigned long long)pc->budget);
            OUT("# HELP g4_prefix_cache_chunks Prompt chunks kept.\n# TYPE g4_prefix_cache_chunks gauge\n");
            OUT("g4_prefix_cache_chunks %llu\n", (unsigned long long)pc->chunks);
            OUT("# HELP g4_prefix_cache_evictions_total Chunks forgotten to stay within the budget.\n"
                "# TYPE g4_prefix_cache_evictions_total counter\n");
            OUT("g4_prefix_cache_evictions_total %llu\n", (unsigned long long)pc->evictions);
        }
        OUT("# HELP g4_stage_up A pipeline daemon is registered and ready.\n# TYPE g4_stage_up gauge\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_up{name=\"%s\",layers=\"%d-%d\"} %d\n", r->daemons[i]->name, r->daemons[i]->layer_begin,
                r->daemons[i]->layer_end, strcmp(r->daemons[i]->state, "gone") != 0);
        OUT("# HELP g4_stage_in_flight Batches or calls a daemon has not answered yet.\n# TYPE g4_stage_in_flight gauge\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_in_flight{name=\"%s\"} %u\n", r->daemons[i]->name, r->daemons[i]->in_flight);
        OUT("# HELP g4_stage_busy A daemon is computing a batch (1), idle (0).\n# TYPE g4_stage_busy gauge\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_busy{name=\"%s\"} %d\n", r->daemons[i]->name, r->daemons[i]->work && r->daemons[i]->work->batch_id != 0);
        OUT("# HELP g4_stage_stuck A daemon is busy without progress for longer than the stuck threshold.\n"
            "# TYPE g4_stage_stuck gauge\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_stuck{name=\"%s\"} %d\n", r->daemons[i]->name,
                r->daemons[i]->activity && !strcmp(r->daemons[i]->activity, "stuck"));
        OUT("# HELP g4_stage_batch_seconds Time spent so far on the batch a daemon computes (0 when idle).\n"
            "# TYPE g4_stage_batch_seconds gauge\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_batch_seconds{name=\"%s\"} %.3f\n", r->daemons[i]->name,
                r->daemons[i]->work ? r->daemons[i]->work->elapsed_ms / 1000.0 : 0.0);
        OUT("# HELP g4_stage_batch_rows Rows of the batch a daemon computes (0 when idle).\n# TYPE g4_stage_batch_rows gauge\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_batch_rows{name=\"%s\"} %u\n", r->daemons[i]->name, r->daemons[i]->work ? r->daemons[i]->work->rows : 0);
        /* speculative decoding: the drafting stages' counters, summed */
        static const char *const dnames[3] = {"draft_tokens", "draft_accepted", "draft_passes"};
        static const char *const dhelp[3] = {"Ids drafted and verified (speculative decoding).",
                                             "Drafted ids the model confirmed.", "Verification passes."};
        for (int k = 0; k < 3; k++) {
            unsigned long long sum = 0;
            for (size_t i = 0; i < r->n_daemons; i++)
                for (size_t c2 = 0; c2 < r->daemons[i]->n_counters; c2++)
                    if (r->daemons[i]->counters[c2]->name && !strcmp(r->daemons[i]->counters[c2]->name, dnames[k]))
                        sum += r->daemons[i]->counters[c2]->value;
            OUT("# HELP g4_%s_total %s\n# TYPE g4_%s_total counter\ng4_%s_total %llu\n", dnames[k], dhelp[k], dnames[k],
                dnames[k], sum);
        }
        OUT("# HELP g4_stage_batches_total Batches a daemon has computed.\n# TYPE g4_stage_batches_total counter\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_batches_total{name=\"%s\"} %llu\n", r->daemons[i]->name,
                (unsigned long long)(r->daemons[i]->work ? r->daemons[i]->work->batches : 0));
    }
#undef OUT
    if (owner) g4__v1__envelope__free_unpacked(owner, NULL);
    enum MHD_Result ret = gw_reply_send(c, 200, "text/plain; version=0.0.4", b ? b : "", b ? n : 0);
    g4_free(b);
    return ret;
}
