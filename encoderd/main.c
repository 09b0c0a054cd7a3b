/* encoderd — the Gemma 4 vision / audio towers as a ZeroMQ ROUTER service:
 * Encode (media bytes -> soft-token embeddings), with a content-hash cache
 * (enc_service). Life: options -> load the projector -> bind -> register ->
 * serve and heartbeat (enc_service_run) -> SIGTERM -> stop, exit 0.
 * `encoderd --help` lists the options. */
#include <stddef.h>
#include <stdio.h>

#include "enc_media.h"
#include "enc_service.h"
#include "g4_daemon.h"
#include "g4_log.h"
#include "g4_matmul.h"

typedef struct encoderd_cfg {
    g4_daemon_cfg_t d;
    char *mmproj;
    int64_t cache_mb, threads, max_image_pixels, max_audio_s;
} encoderd_cfg_t;

#define S_OPT(t, field) .type = t, .offset = offsetof(encoderd_cfg_t, field)
static const g4_cfg_opt_t s_opts[] = {
    {"mmproj", S_OPT(G4_CFG_STRING, mmproj), NULL, 1, 0, 0, "the projector GGUF (vision and/or audio)", .alias = "-m",
     .flags = G4_CFG_REQUIRED, .arg = "MMPROJ.gguf"},
    {"cache-mb", S_OPT(G4_CFG_INT, cache_mb), "512", 0, 1 << 20, 0, "embedding cache size in MiB (0: off)"},
    {"threads", S_OPT(G4_CFG_INT, threads), "0", 0, 4096, 0, "compute threads (0: all)", .alias = "-t"},
    {"max-image-pixels", S_OPT(G4_CFG_INT, max_image_pixels), "33554432", 1, (int64_t)1 << 32, 0,
     "pixels of an image at most (refused before decoding)"},
    {"max-audio-seconds", S_OPT(G4_CFG_INT, max_audio_s), "300", 1, 4 * 3600, 0,
     "length of an audio clip at most (8 to 192 kHz are taken)"},
};
static const g4_daemon_spec_t s_spec = {
    .prog = "encoderd",
    .about = "The Gemma 4 vision / audio towers as a ZeroMQ ROUTER service (Encode, with a content-hash cache).",
    .opts = s_opts, .n_opts = sizeof s_opts / sizeof s_opts[0],
    .common_offset = offsetof(encoderd_cfg_t, d), .registers = 1, .name = "encoder",
};

int main(int argc, char **argv)
{
    encoderd_cfg_t c;
    g4_daemon_opts_t o;
    const int usage = g4_daemon_configure(&o, &s_spec, &c, argc, argv);
    if (usage >= 0) return usage;
    g4_daemon_signals();
    if (c.threads > 0) g4_kernels_set_threads((int)c.threads);
    enc_media_set_limits(c.max_image_pixels, (int)c.max_audio_s);
    g4_err_t err;
    void *zctx = NULL, *sock = NULL;
    enc_service_t *svc = NULL;
    enc_model_t *m = enc_model_load(c.mmproj, &err);
    if (!m) goto fail;
    zctx = zmq_ctx_new(); /* after the model: a file that does not load leaves nothing behind */
    const enc_info_t *in = enc_model_info(m);
    if (!(sock = g4_daemon_listen(zctx, ZMQ_ROUTER, c.d.listen, G4_WIRE_PEERS_DAEMONS, &err))) goto fail;
    if (!(svc = enc_service_new(m, zctx, sock, (uint64_t)c.cache_mb << 20, &err))) goto fail;
    const g4_daemon_info_t info = {.role = G4__V1__ROLE__ROLE_ENCODER, .model = c.mmproj,
                                   .digest = enc_model_digest(m),
                                   .n_embd = in->has_vision ? in->v_proj_dim : in->a_proj_dim,
                                   .has_vision = in->has_vision, .has_audio = in->has_audio};
    g4_daemon_t d;
    if (g4_daemon_register(&d, zctx, &c.d, &info, &err)) goto fail;
    g4_log_info("encoderd", "serving %s on %s (%s%s%s, output width %d)", c.mmproj, c.d.listen,
                in->has_vision ? "vision" : "", in->has_vision && in->has_audio ? " + " : "",
                in->has_audio ? "audio" : "", info.n_embd);
    enc_service_run(svc, &d); /* until SIGTERM */
    uint64_t n[ENC_C_COUNT];
    enc_service_counters(svc, n);
    g4_log_info("encoderd", "stopping after %llu requests (%llu from the cache, %llu errors)",
                (unsigned long long)n[ENC_C_REQUESTS], (unsigned long long)n[ENC_C_CACHE_HITS],
                (unsigned long long)n[ENC_C_ERRORS]);
    g4_daemon_close(&d);
    enc_service_free(&svc);
    zmq_close(sock);
    zmq_ctx_term(zctx);
    enc_model_destroy(&m);
    g4_daemon_opts_fini(&o);
    return 0;
fail:
    g4_log_error("encoderd", "%s", err.msg);
    g4_daemon_opts_fini(&o);
    return 1;
}
