/* tokd_stress TOKENIZERD MODEL.gguf — tokenizerd under hostile and heavy load:
 *  1. random frames, random multipart messages and envelopes with random
 *     protobuf bodies: the daemon stays up and answers errors where it can;
 *  2. 8 clients x 1250 requests (tokenize, detokenize, render, info) with up
 *     to 16 in flight each: every request gets exactly its reply, none lost.
 * Prints "N passed, N failed". */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "g4_wire.h"

static int s_pass, s_fail;
static char s_ep[256];
static void *s_zctx;

#define CHECK(c, ...)                                                                                   \
    do {                                                                                                \
        if (c) s_pass++;                                                                                \
        else {                                                                                          \
            s_fail++;                                                                                   \
            printf("FAIL: " __VA_ARGS__);                                                               \
            printf("\n");                                                                               \
        }                                                                                               \
    } while (0)

static void *s_client(void)
{
    g4_err_t err;
    void *s = g4_wire_socket(s_zctx, ZMQ_DEALER, &err);
    g4_wire_connect(s, s_ep, &err);
    return s;
}

static int s_info(void *s, uint64_t id, int *vocab)
{
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__Header h = G4__V1__HEADER__INIT;
    G4__V1__InfoRequest ir = G4__V1__INFO_REQUEST__INIT;
    h.request_id = id;
    env.header = &h;
    env.body_case = G4__V1__ENVELOPE__BODY_INFO;
    env.info = &ir;
    g4_err_t err;
    if (g4_wire_send(s, NULL, 0, &env, NULL, NULL, 0, 0, &err)) return -1;
    for (;;) {
        g4_msg_t m;
        if (g4_wire_recv(s, 0, &m, 5000, &err)) {
            g4_msg_close(&m);
            if (err.code == G4_ERR_TIMEOUT) return -1;
            continue; /* an error reply to the garbage */
        }
        int ok = m.env->header->request_id == id && m.env->body_case == G4__V1__ENVELOPE__BODY_INFO_REPLY;
        if (ok) *vocab = m.env->info_reply->vocab_size;
        g4_msg_close(&m);
        if (ok) return 0;
    }
}

static void s_fuzz(void)
{
    void *s = s_client();
    unsigned seed = 12345;
    uint8_t buf[4096];
    int vocab = 0;
    CHECK(s_info(s, 1, &vocab) == 0 && vocab > 0, "info before fuzzing");
    for (int i = 0; i < 3000; i++) {
        size_t n = (size_t)(rand_r(&seed) % 600);
        for (size_t k = 0; k < n; k++) buf[k] = (uint8_t)rand_r(&seed);
        int kind = rand_r(&seed) % 4;
        if (kind == 0) { /* random bytes, one frame */
            zmq_send(s, buf, n, 0);
        } else if (kind == 1) { /* random multipart */
            int parts = 1 + rand_r(&seed) % 5;
            for (int p = 0; p < parts; p++) zmq_send(s, buf, n / (size_t)parts, p + 1 < parts ? ZMQ_SNDMORE : 0);
        } else { /* a valid header and a random body of a random field */
            G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
            G4__V1__Header h = G4__V1__HEADER__INIT;
            h.version = kind == 3 ? (uint32_t)rand_r(&seed) % 3 : 1;
            h.request_id = (uint64_t)i;
            env.header = &h;
            uint8_t packed[64];
            size_t hl = g4__v1__envelope__pack(&env, packed);
            memcpy(buf, packed, hl);
            /* field number among the envelope's, length-delimited, random payload */
            static const int fields[] = {10, 12, 14, 16, 18, 30, 40, 45, 50, 99};
            int f = fields[rand_r(&seed) % 10];
            size_t pl = n > 200 ? 200 : n;
            buf[hl] = (uint8_t)((f << 3) | 2);
            size_t off = hl + 1;
            if (f >= 16) buf[off++] = (uint8_t)(0x80 | ((f << 3) >> 7)), buf[hl] = (uint8_t)(((f << 3) | 2) | 0x80),
                         buf[hl + 1] = (uint8_t)((f << 3) >> 7), off = hl + 2;
            buf[off++] = (uint8_t)pl;
            for (size_t k = 0; k < pl; k++) buf[off + k] = (uint8_t)rand_r(&seed);
            zmq_send(s, buf, off + pl, 0);
        }
    }
    int alive = s_info(s, 999999, &vocab) == 0;
    CHECK(alive, "tokenizerd answers after 3000 hostile messages");
    zmq_close(s);
}

typedef struct load_arg {
    int id, ok, bad;
} load_arg_t;

static void *s_load(void *p)
{
    load_arg_t *a = p;
    void *s = s_client();
    const int total = 1250, window = 16;
    int sent = 0, got = 0;
    char *seen = calloc(total, 1);
    g4_err_t err;
    static const char *texts[] = {"Hello world", "héllo 👍", "<|turn>user\nHi<turn|>", "def f(x):\n    return x"};
    static const int32_t want0[] = {9259, 1902};
    while (got < total) {
        while (sent < total && sent - got < window) {
            G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
            G4__V1__Header h = G4__V1__HEADER__INIT;
            h.request_id = (uint64_t)a->id << 32 | (uint64_t)sent;
            env.header = &h;
            G4__V1__TokenizeRequest tr = G4__V1__TOKENIZE_REQUEST__INIT;
            G4__V1__DetokenizeRequest dr = G4__V1__DETOKENIZE_REQUEST__INIT;
            G4__V1__RenderChatRequest rr = G4__V1__RENDER_CHAT_REQUEST__INIT;
            G4__V1__InfoRequest ir = G4__V1__INFO_REQUEST__INIT;
            int32_t ids[2] = {9259, 1902};
            switch (sent % 4) {
            case 0:
                tr.text.data = (uint8_t *)texts[(sent / 4) % 4], tr.text.len = strlen(texts[(sent / 4) % 4]);
                env.body_case = G4__V1__ENVELOPE__BODY_TOKENIZE, env.tokenize = &tr;
                break;
            case 1:
                dr.ids = ids, dr.n_ids = 2;
                env.body_case = G4__V1__ENVELOPE__BODY_DETOKENIZE, env.detokenize = &dr;
                break;
            case 2:
                rr.conversation_json = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"add_generation_prompt\":true,"
                                       "\"bos_token\":\"<bos>\"}";
                env.body_case = G4__V1__ENVELOPE__BODY_RENDER_CHAT, env.render_chat = &rr;
                break;
            default:
                env.body_case = G4__V1__ENVELOPE__BODY_INFO, env.info = &ir;
            }
            if (g4_wire_send(s, NULL, 0, &env, NULL, NULL, 0, 0, &err)) break;
            sent++;
        }
        g4_msg_t m;
        if (g4_wire_recv(s, 0, &m, 10000, &err)) {
            g4_msg_close(&m);
            break; /* lost replies */
        }
        uint64_t rid = m.env->header->request_id;
        int k = (int)(rid & 0xffffffff);
        int ok = (rid >> 32) == (uint64_t)a->id && k < total && !seen[k];
        if (ok) {
            seen[k] = 1;
            switch (k % 4) {
            case 0:
                ok = m.env->body_case == G4__V1__ENVELOPE__BODY_TOKENIZE_REPLY &&
                     ((k / 4) % 4 != 0 || (m.env->tokenize_reply->n_ids == 2 &&
                                           !memcmp(m.env->tokenize_reply->ids, want0, sizeof want0)));
                break;
            case 1:
                ok = m.env->body_case == G4__V1__ENVELOPE__BODY_DETOKENIZE_REPLY && m.env->detokenize_reply->n_chunks == 2 &&
                     m.env->detokenize_reply->chunks[0].len == 5 && !memcmp(m.env->detokenize_reply->chunks[0].data, "Hello", 5);
                break;
            case 2:
                ok = m.env->body_case == G4__V1__ENVELOPE__BODY_RENDER_CHAT_REPLY &&
                     m.env->render_chat_reply->prompt.len > 20;
                break;
            default: ok = m.env->body_case == G4__V1__ENVELOPE__BODY_INFO_REPLY;
            }
        }
        if (ok) a->ok++;
        else a->bad++;
        got++;
        g4_msg_close(&m);
    }
    a->bad += total - got;
    free(seen);
    zmq_close(s);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: tokd_stress TOKENIZERD MODEL.gguf\n");
        return 2;
    }
    char model[1024];
    const char *td = getenv("G4_TESTDATA");
    if (td && *td) snprintf(model, sizeof model, "%s/vocab/ggml-vocab-gemma-4.gguf", td);
    else snprintf(model, sizeof model, "%s", argv[2]);
    argv[2] = model;
    if (access(argv[2], R_OK) != 0) {
        printf("SKIP: %s not found (set G4_TESTDATA)\n", argv[2]);
        return 77;
    }
    char dir[] = "/tmp/g4-tokd-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    snprintf(s_ep, sizeof s_ep, "ipc://%s/tok", dir);
    pid_t pid = fork();
    if (pid == 0) {
        execl(argv[1], argv[1], "--model", argv[2], "--listen", s_ep, (char *)NULL);
        _exit(127);
    }
    s_zctx = zmq_ctx_new();
    usleep(200000);
    s_fuzz();
    pthread_t th[8];
    load_arg_t la[8];
    for (int i = 0; i < 8; i++) {
        la[i] = (load_arg_t){i + 1, 0, 0};
        pthread_create(&th[i], NULL, s_load, &la[i]);
    }
    int ok = 0, bad = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        ok += la[i].ok, bad += la[i].bad;
    }
    printf("load: %d of 10000 requests answered correctly, %d lost or wrong\n", ok, bad);
    CHECK(ok == 10000 && bad == 0, "load test");
    int status = 0;
    CHECK(waitpid(pid, &status, WNOHANG) == 0, "tokenizerd still running");
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "tokenizerd exits 0 on SIGTERM (status %d)", status);
    zmq_ctx_term(s_zctx);
    char path[300];
    snprintf(path, sizeof path, "%s/tok", dir);
    unlink(path);
    rmdir(dir);
    printf("%d passed, %d failed\n", s_pass, s_fail);
    return s_fail ? 1 : 0;
}
