/* shard_daemon — see shard_daemon.h. */
#include "shard_daemon.h"

#include "g4_log.h"

void shard_daemon_run(shard_t *s, g4_daemon_t *d, g4_weights_mode_t wmode)
{
    enum { C_BATCHES, C_ERRORS, C_WEIGHTS_READY, C_WEIGHTS_MS, C_CACHE_BYTES, C_CACHE_CHUNKS, C_DRAFTED, C_ACCEPTED,
           C_PASSES, C_N };
    static const char *const cnames[C_N] = {"batches", "errors", "weights_ready", "weights_ready_ms",
                                            "prefix_cache_bytes", "prefix_cache_chunks", "draft_tokens",
                                            "draft_accepted", "draft_passes"};
    d->n_counters = C_N;
    for (int i = 0; i < C_N; i++) d->counter_names[i] = cnames[i];
    int warm_logged = 0;
    while (!g4_daemon_stop) {
        g4_msg_t m;
        if (g4_daemon_wait(d, G4_HEARTBEAT_MS / 2, &m)) {
            if (m.env->body_case == G4__V1__ENVELOPE__BODY_RELEASE)
                shard_worker_release(s, m.env->release->slots, m.env->release->n_slots);
            else if (m.env->body_case == G4__V1__ENVELOPE__BODY_CHAIN)
                shard_set_chain(s, m.env->chain); /* where the worker may send next */
            g4_msg_close(&m);
        }
        if (!warm_logged && atomic_load(&s->weights_ready)) {
            warm_logged = 1;
            g4_log_info("shardd", "weights %s in %llu ms", wmode == G4_WEIGHTS_COPY ? "copied to huge pages" : "mapped in",
                        (unsigned long long)atomic_load(&s->weights_ready_ms));
            d->counter_values[C_WEIGHTS_READY] = 1;
            d->counter_values[C_WEIGHTS_MS] = atomic_load(&s->weights_ready_ms);
        }
        d->counter_values[C_BATCHES] = atomic_load(&s->batches_pub);
        d->counter_values[C_ERRORS] = atomic_load(&s->errors_pub);
        d->counter_values[C_CACHE_BYTES] = atomic_load(&s->cache_bytes_pub);
        d->counter_values[C_CACHE_CHUNKS] = atomic_load(&s->cache_chunks_pub);
        d->counter_values[C_DRAFTED] = atomic_load(&s->spec_drafted);
        d->counter_values[C_ACCEPTED] = atomic_load(&s->spec_accepted);
        d->counter_values[C_PASSES] = atomic_load(&s->spec_passes);
        g4_daemon_tick(d);
    }
}
