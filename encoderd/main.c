/* encoderd --mmproj MMPROJ.gguf --listen EP [--scheduler EP] [--advertise EP] [--name NAME]
 *          [--cache-mb N] [--threads N] [--log-level L]
 * The Gemma 4 vision / audio towers as a ZeroMQ ROUTER service: Encode
 * (media bytes -> soft-token embeddings), with a content-hash cache. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "enc_service.h"
#include "g4_daemon.h"
#include "g4_log.h"
#include "g4_matmul.h"

static const char s_usage[] =
    "usage: encoderd --mmproj MMPROJ.gguf --listen EP [--scheduler EP] [--advertise EP] [--name NAME]\n"
    "                [--cache-mb N] [--threads N] [--log-level L]\n"
    "  EP: ipc://PATH or tcp://HOST:PORT; --cache-mb 0 turns the embedding cache off (default 512)\n";

static void s_handle(void *svc, void *sock, g4_msg_t *m)
{
    (void)sock;
    enc_service_handle(svc, m);
}

int main(int argc, char **argv)
{
    g4_log_set_level(G4_LOG_INFO);
    const char *mmproj = NULL, *listen = NULL, *sched = NULL, *advertise = NULL, *name = "encoder";
    long cache_mb = 512;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "--mmproj") || !strcmp(a, "-m")) && v) mmproj = v, i++;
        else if (!strcmp(a, "--listen") && v) listen = v, i++;
        else if (!strcmp(a, "--scheduler") && v) sched = v, i++;
        else if (!strcmp(a, "--advertise") && v) advertise = v, i++;
        else if (!strcmp(a, "--name") && v) name = v, i++;
        else if (!strcmp(a, "--cache-mb") && v) cache_mb = atol(v), i++;
        else if ((!strcmp(a, "--threads") || !strcmp(a, "-t")) && v) threads = atoi(v), i++;
        else if (g4_daemon_log_opt(a, v)) i++;
        else {
            fputs(s_usage, strcmp(a, "--help") ? stderr : stdout);
            return strcmp(a, "--help") ? 2 : 0;
        }
    }
    if (!mmproj || !listen || cache_mb < 0) {
        fputs(s_usage, stderr);
        return 2;
    }
    g4_log_set_ident("encoderd");
    g4_daemon_signals();
    if (threads > 0) g4_kernels_set_threads(threads);
    g4_err_t err;
    enc_model_t *m = enc_model_load(mmproj, &err);
    if (!m) {
        g4_log_error("encoderd", "%s", err.msg);
        return 1;
    }
    const enc_info_t *in = enc_model_info(m);
    void *zctx = zmq_ctx_new();
    void *sock = g4_daemon_listen(zctx, ZMQ_ROUTER, listen, &err);
    if (!sock) {
        g4_log_error("encoderd", "%s", err.msg);
        return 1;
    }
    enc_service_t *svc = enc_service_new(m, zctx, sock, (uint64_t)cache_mb << 20, &err);
    if (!svc) {
        g4_log_error("encoderd", "%s", err.msg);
        return 1;
    }
    char host[64] = "", digest[32];
    gethostname(host, sizeof host - 1);
    snprintf(digest, sizeof digest, "%016llx", (unsigned long long)enc_model_digest(m));
    G4__V1__Register reg = G4__V1__REGISTER__INIT;
    reg.role = G4__V1__ROLE__ROLE_ENCODER;
    reg.name = (char *)name;
    reg.pid = (int)getpid();
    reg.endpoint = (char *)(advertise ? advertise : listen);
    reg.model = (char *)mmproj;
    reg.model_digest = digest;
    reg.backend = "cpu";
    reg.host = host;
    reg.n_embd = in->has_vision ? in->v_proj_dim : in->a_proj_dim;
    reg.has_vision = in->has_vision;
    reg.has_audio = in->has_audio;
    g4_daemon_t d;
    if (g4_daemon_init(&d, zctx, sched, &reg, &err)) {
        g4_log_error("encoderd", "%s", err.msg);
        return 1;
    }
    d.n_counters = ENC_C_COUNT;
    for (int i = 0; i < ENC_C_COUNT; i++) d.counter_names[i] = enc_counter_names[i];
    g4_log_info("encoderd", "serving %s on %s (%s%s%s, output width %d)", mmproj, listen, in->has_vision ? "vision" : "",
                in->has_vision && in->has_audio ? " + " : "", in->has_audio ? "audio" : "", reg.n_embd);
    while (!g4_daemon_stop) {
        zmq_pollitem_t it[3] = {{sock, 0, ZMQ_POLLIN, 0}, {enc_service_results(svc), 0, ZMQ_POLLIN, 0},
                                {d.ctl, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(it, d.ctl ? 3 : 2, G4_HEARTBEAT_MS / 2);
        if (n > 0 && (it[1].revents & ZMQ_POLLIN)) enc_service_on_results(svc);
        if (n > 0 && (it[0].revents & ZMQ_POLLIN)) g4_daemon_serve_burst(sock, 64, s_handle, svc, NULL);
        if (n > 0 && d.ctl && (it[2].revents & ZMQ_POLLIN)) g4_daemon_poll_ctl(&d);
        enc_service_counters(svc, d.counter_values);
        g4_daemon_tick(&d);
    }
    uint64_t c[ENC_C_COUNT];
    enc_service_counters(svc, c);
    g4_log_info("encoderd", "stopping after %llu requests (%llu from the cache, %llu errors)",
                (unsigned long long)c[ENC_C_REQUESTS], (unsigned long long)c[ENC_C_CACHE_HITS],
                (unsigned long long)c[ENC_C_ERRORS]);
    g4_daemon_close(&d);
    enc_service_free(&svc);
    zmq_close(sock);
    zmq_ctx_term(zctx);
    enc_model_destroy(&m);
    return 0;
}
