/* hostile_peer — one attack on a g4 stack, as a peer that speaks the protocol
 * (test_hostile.py drives it; keys from G4_CURVE_KEYS as any client):
 *   hostile_peer register SCHED_EP NAME PID    a Register (role shard, layers 0-1):
 *                                              prints "accepted", "refused: WHY" or "no reply"
 *   hostile_peer result RESULTS_EP BATCH_ID    a forged ForwardResult (an error for that batch)
 *   hostile_peer batch SHARD_EP ROUTE N_SAMPLE [LISTEN_EP]
 *                                              a ForwardBatch of one row (token 2, slot 0) with
 *                                              ROUTE (comma-separated) and N_SAMPLE sample rows;
 *                                              with LISTEN_EP, listens there 2 s first and
 *                                              prints "received" or "nothing"
 * Exit 0 when the message went out, 1 when it could not, 2 on usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "g4_wire.h"

static int s_register(void *z, const char *ep, const char *name, int pid)
{
    g4_err_t err;
    void *s = g4_wire_socket(z, ZMQ_DEALER, &err);
    if (!s || g4_wire_connect(s, ep, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__Register r = G4__V1__REGISTER__INIT;
    r.role = G4__V1__ROLE__ROLE_SHARD, r.name = (char *)name, r.pid = pid, r.endpoint = "ipc:///nonexistent/hostile";
    r.layer_begin = 0, r.layer_end = 1, r.n_layer = 4, r.n_slots = 4, r.host = "hostile";
    env.body_case = G4__V1__ENVELOPE__BODY_REGISTER;
    env.register_ = &r;
    if (g4_wire_send(s, NULL, 0, &env, NULL, NULL, 0, 0, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    g4_msg_t m;
    if (g4_wire_recv(s, 0, &m, 2000, &err)) printf("no reply\n");
    else if (m.env->body_case == G4__V1__ENVELOPE__BODY_REGISTER_REPLY && m.env->register_reply->accepted) printf("accepted\n");
    else if (m.env->body_case == G4__V1__ENVELOPE__BODY_REGISTER_REPLY)
        printf("refused: %s\n", m.env->register_reply->reason ? m.env->register_reply->reason : "");
    else printf("refused: %s\n", m.env->body_case == G4__V1__ENVELOPE__BODY_ERROR ? m.env->error->message : "?");
    g4_msg_close(&m);
    zmq_close(s);
    return 0;
}

static int s_push(void *z, const char *ep, G4__V1__Envelope *env)
{
    g4_err_t err;
    void *s = g4_wire_socket(z, ZMQ_PUSH, &err);
    if (!s || g4_wire_connect(s, ep, &err) || g4_wire_send(s, NULL, 0, env, NULL, NULL, 0, 0, &err))
        return fprintf(stderr, "%s\n", err.msg), 1;
    usleep(300 * 1000); /* (linger: the frame goes out before the socket closes) */
    zmq_close(s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) return fprintf(stderr, "usage: see the header of hostile_peer.c\n"), 2;
    void *z = zmq_ctx_new();
    g4_err_t err;
    if (g4_wire_security_init(z, 0, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    int rc = 2;
    if (!strcmp(argv[1], "register") && argc == 5) {
        rc = s_register(z, argv[2], argv[3], atoi(argv[4]));
    } else if (!strcmp(argv[1], "result")) {
        G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
        G4__V1__ForwardResult r = G4__V1__FORWARD_RESULT__INIT;
        G4__V1__Error e = G4__V1__ERROR__INIT;
        e.code = G4__V1__ERROR_CODE__ERROR_CODE_STATE, e.message = "forged";
        r.batch_id = strtoull(argv[3], NULL, 0), r.error = &e;
        env.body_case = G4__V1__ENVELOPE__BODY_FORWARD_RESULT;
        env.forward_result = &r;
        rc = s_push(z, argv[2], &env);
    } else if (!strcmp(argv[1], "batch") && argc >= 5) {
        void *lis = NULL;
        if (argc > 5) {
            g4_wire_set_insecure(1);
            lis = g4_wire_socket(z, ZMQ_PULL, &err);
            if (!lis || g4_wire_bind(lis, argv[5], &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        }
        char *route[8], *save = NULL, *rs = strdup(argv[3]);
        size_t n_route = 0;
        for (char *t = strtok_r(rs, ",", &save); t && n_route < 8; t = strtok_r(NULL, ",", &save)) route[n_route++] = t;
        const size_t n_sample = strtoull(argv[4], NULL, 0);
        uint32_t *sample = calloc(n_sample + 1, sizeof *sample); /* all row 0 */
        int32_t tok = 2, pos = 0;
        uint32_t slot = 0;
        G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
        G4__V1__ForwardBatch fb = G4__V1__FORWARD_BATCH__INIT;
        fb.batch_id = 12345, fb.route = route, fb.n_route = n_route;
        fb.tokens = &tok, fb.n_tokens = 1, fb.pos = &pos, fb.n_pos = 1, fb.slot = &slot, fb.n_slot = 1;
        fb.sample_rows = sample, fb.n_sample_rows = n_sample;
        env.body_case = G4__V1__ENVELOPE__BODY_FORWARD;
        env.forward = &fb;
        rc = s_push(z, argv[2], &env);
        if (lis) {
            g4_msg_t m;
            const int got = g4_wire_recv(lis, 0, &m, 2000, &err) == G4_OK;
            if (got) g4_msg_close(&m);
            printf("%s\n", got ? "received" : "nothing");
            zmq_close(lis);
        }
        free(sample), free(rs);
    }
    zmq_ctx_term(z);
    return rc;
}
