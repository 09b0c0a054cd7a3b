/* g4_curve — ZeroMQ CURVE on every tcp:// endpoint when keys are configured.
 *
 *   G4_CURVE_SECRET  file with this process's key pair ("public=Z85" and
 *                    "secret=Z85" lines, as `g4 keygen` writes them)
 *   G4_CURVE_SERVER  the servers' public key (Z85, or a file holding it);
 *                    default: this process's own public key (one cluster key)
 *   G4_CURVE_ALLOW   file of client public keys allowed to connect (one Z85 per
 *                    line); this process's own public key is always allowed
 *
 * A bound tcp:// socket becomes a CURVE server and every handshake goes
 * through a ZAP handler (one thread per ZeroMQ context) that accepts only the
 * allowed keys; a connecting socket becomes a CURVE client. Peers without the
 * right keys get no messages through. ipc:// endpoints rely on the run
 * directory's permissions instead. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "g4_log.h"
#include "g4_wire.h"

#define MAX_ALLOW 1024

static struct {
    int on;
    char pub[41], sec[41], server[41];
    char allow[MAX_ALLOW][41];
    int n_allow;
} s_cfg;
static pthread_mutex_t s_mu = PTHREAD_MUTEX_INITIALIZER;
static void *s_zap_ctx[16];
static int s_n_zap;

static int s_read_key(const char *line, const char *name, char out[41])
{
    size_t n = strlen(name);
    if (strncmp(line, name, n) || line[n] != '=') return 0;
    const char *v = line + n + 1;
    size_t k = 0;
    while (v[k] && v[k] != '\n' && v[k] != '\r' && k < 40) out[k] = v[k], k++;
    out[k] = 0;
    return k == 40;
}

static int s_load(g4_err_t *err)
{
    const char *secret = getenv("G4_CURVE_SECRET");
    if (!secret || !*secret) return 0;
    FILE *f = fopen(secret, "r");
    if (!f) return g4_err_set(err, G4_ERR_IO, "G4_CURVE_SECRET: cannot read %s", secret);
    char line[256];
    int have_pub = 0, have_sec = 0;
    while (fgets(line, sizeof line, f)) {
        have_pub |= s_read_key(line, "public", s_cfg.pub);
        have_sec |= s_read_key(line, "secret", s_cfg.sec);
    }
    fclose(f);
    if (!have_pub || !have_sec)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: needs public=Z85 and secret=Z85 lines (g4 keygen)", secret);
    const char *server = getenv("G4_CURVE_SERVER");
    memcpy(s_cfg.server, s_cfg.pub, sizeof s_cfg.server);
    if (server && *server) {
        if (strlen(server) == 40 && !strchr(server, '/')) {
            memcpy(s_cfg.server, server, 41);
        } else {
            FILE *g = fopen(server, "r");
            if (!g || !fgets(line, sizeof line, g)) {
                if (g) fclose(g);
                return g4_err_set(err, G4_ERR_IO, "G4_CURVE_SERVER: cannot read %s", server);
            }
            fclose(g);
            if (!s_read_key(line, "public", s_cfg.server)) {
                size_t k = 0;
                while (line[k] && line[k] != '\n' && k < 40) s_cfg.server[k] = line[k], k++;
                s_cfg.server[k] = 0;
                if (k != 40) return g4_err_set(err, G4_ERR_FORMAT, "%s: not a Z85 public key", server);
            }
        }
    }
    memcpy(s_cfg.allow[s_cfg.n_allow++], s_cfg.pub, 41);
    const char *allow = getenv("G4_CURVE_ALLOW");
    if (allow && *allow) {
        FILE *g = fopen(allow, "r");
        if (!g) return g4_err_set(err, G4_ERR_IO, "G4_CURVE_ALLOW: cannot read %s", allow);
        while (fgets(line, sizeof line, g) && s_cfg.n_allow < MAX_ALLOW) {
            char k[41];
            if (s_read_key(line, "public", k) || (strlen(line) >= 40 && (memcpy(k, line, 40), k[40] = 0, 1)))
                memcpy(s_cfg.allow[s_cfg.n_allow++], k, 41);
        }
        fclose(g);
    }
    s_cfg.on = 1;
    return 0;
}

/* ZAP (RFC 27): version, request id, domain, address, identity, mechanism, credentials */
static void *s_zap(void *zctx)
{
    void *rep = zmq_socket(zctx, ZMQ_REP);
    int linger = 0;
    zmq_setsockopt(rep, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(rep, "inproc://zeromq.zap.01") != 0) {
        zmq_close(rep);
        return NULL;
    }
    for (;;) {
        zmq_msg_t part[7];
        int n = 0, more = 1;
        size_t sz = sizeof more;
        while (more && n < 7) {
            zmq_msg_init(&part[n]);
            if (zmq_msg_recv(&part[n], rep, 0) < 0) {
                zmq_msg_close(&part[n]);
                for (int i = 0; i < n; i++) zmq_msg_close(&part[i]);
                zmq_close(rep); /* the context is terminating */
                return NULL;
            }
            n++;
            zmq_getsockopt(rep, ZMQ_RCVMORE, &more, &sz);
        }
        while (more) { /* drop extra frames */
            zmq_msg_t x;
            zmq_msg_init(&x);
            zmq_msg_recv(&x, rep, 0);
            zmq_msg_close(&x);
            zmq_getsockopt(rep, ZMQ_RCVMORE, &more, &sz);
        }
        int ok = 0;
        char key[41] = "";
        if (n == 7 && zmq_msg_size(&part[5]) == 5 && !memcmp(zmq_msg_data(&part[5]), "CURVE", 5) &&
            zmq_msg_size(&part[6]) == 32) {
            zmq_z85_encode(key, zmq_msg_data(&part[6]), 32);
            for (int i = 0; i < s_cfg.n_allow && !ok; i++) ok = !strcmp(key, s_cfg.allow[i]);
        }
        if (!ok) g4_log_warn("curve", "refused a peer%s%s", key[0] ? " with key " : " (no CURVE key)", key);
        const char *status = ok ? "200" : "400", *text = ok ? "OK" : "key not allowed";
        zmq_send(rep, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(rep, n > 1 ? zmq_msg_data(&part[1]) : "", n > 1 ? zmq_msg_size(&part[1]) : 0, ZMQ_SNDMORE);
        zmq_send(rep, status, 3, ZMQ_SNDMORE);
        zmq_send(rep, text, strlen(text), ZMQ_SNDMORE);
        zmq_send(rep, ok ? key : "", ok ? strlen(key) : 0, ZMQ_SNDMORE);
        zmq_send(rep, "", 0, 0);
        for (int i = 0; i < n; i++) zmq_msg_close(&part[i]);
    }
}

int g4_wire_security_init(void *zctx, int serve, g4_err_t *err)
{
    pthread_mutex_lock(&s_mu);
    static int loaded;
    int rc = 0;
    if (!loaded) {
        rc = s_load(err);
        loaded = rc == 0;
    }
    if (rc == 0 && s_cfg.on && serve) {
        int have = 0;
        for (int i = 0; i < s_n_zap; i++) have |= s_zap_ctx[i] == zctx;
        if (!have && s_n_zap < 16) {
            pthread_t t;
            pthread_attr_t a;
            pthread_attr_init(&a);
            pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
            if (pthread_create(&t, &a, s_zap, zctx) == 0) s_zap_ctx[s_n_zap++] = zctx;
            pthread_attr_destroy(&a);
        }
    }
    pthread_mutex_unlock(&s_mu);
    return rc;
}

int g4_wire_curve_on(void) { return s_cfg.on; }

void g4_wire_curve_server(void *sock)
{
    int one = 1;
    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, s_cfg.sec, 40);
    zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "g4", 2);
}

void g4_wire_curve_client(void *sock)
{
    zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, s_cfg.server, 40);
    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, s_cfg.pub, 40);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, s_cfg.sec, 40);
}
