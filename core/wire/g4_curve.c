/* g4_curve — ZeroMQ CURVE on every tcp:// endpoint when keys are configured,
 * with two roles: daemon keys (register, serve stages, send results) and
 * client keys (submit requests).
 *
 *   G4_CURVE_KEYS    a key set made by `g4 keygen DIR`: DIR/daemon.key,
 *                    daemon.pub, client.key, client.pub. A daemon (serving
 *                    process) uses daemon.key; a client (the g4 command, the
 *                    gateway) client.key (daemon.key when it has no client.key).
 *   G4_CURVE_SECRET  instead: this process's key pair ("public=Z85" and
 *                    "secret=Z85" lines, as `g4 keygen --out` writes them)
 *   G4_CURVE_SERVER  the servers' public key (Z85, or a file holding it);
 *                    default: daemon.pub of the set, else this process's own key
 *   G4_CURVE_DAEMONS file of further daemon public keys (one Z85 per line)
 *   G4_CURVE_ALLOW   file of client public keys (one Z85 per line; client.pub
 *                    of the set is always allowed)
 *
 * A bound tcp:// socket becomes a CURVE server and every handshake goes
 * through a ZAP handler (one thread per ZeroMQ context, ZMQ_ZAP_ENFORCE_DOMAIN
 * on every socket) that knows two domains: "g4" (the scheduler's and the
 * tokenizer's request sockets: daemon and client keys) and "g4-daemon"
 * (shard data, scheduler results, encoder: daemon keys only). The user id it
 * answers is "daemon:KEY" or "client:KEY"; receivers read it back
 * (g4_msg_t.user_id) to check who may do what. A connecting socket becomes a
 * CURVE client. ipc:// endpoints rely on the run directory's permissions. */
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
    uint8_t allow_daemon[MAX_ALLOW]; /* 1: a daemon key, 0: a client key */
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

static int s_read_pair(const char *path, g4_err_t *err)
{
    FILE *f = fopen(path, "r");
    if (!f) return g4_err_set(err, G4_ERR_IO, "CURVE key %s: cannot read it", path);
    char line[256];
    int have_pub = 0, have_sec = 0;
    while (fgets(line, sizeof line, f)) {
        have_pub |= s_read_key(line, "public", s_cfg.pub);
        have_sec |= s_read_key(line, "secret", s_cfg.sec);
    }
    fclose(f);
    if (!have_pub || !have_sec)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: needs public=Z85 and secret=Z85 lines (g4 keygen)", path);
    return 0;
}

/* One public key: Z85 text, a "public=" line or a bare line of a file. */
static int s_read_pub(const char *what, const char *v, char out[41], g4_err_t *err)
{
    if (strlen(v) == 40 && !strchr(v, '/')) {
        memcpy(out, v, 41);
        return 0;
    }
    char line[256];
    FILE *g = fopen(v, "r");
    if (!g || !fgets(line, sizeof line, g)) {
        if (g) fclose(g);
        return g4_err_set(err, G4_ERR_IO, "%s: cannot read %s", what, v);
    }
    fclose(g);
    if (s_read_key(line, "public", out)) return 0;
    size_t k = 0;
    while (line[k] && line[k] != '\n' && line[k] != '\r' && k < 40) out[k] = line[k], k++;
    out[k] = 0;
    if (k != 40) return g4_err_set(err, G4_ERR_FORMAT, "%s: %s is not a Z85 public key", what, v);
    return 0;
}

static void s_allow(const char *key, int daemon)
{
    for (int i = 0; i < s_cfg.n_allow; i++)
        if (!strcmp(s_cfg.allow[i], key)) {
            s_cfg.allow_daemon[i] |= (uint8_t)daemon;
            return;
        }
    if (s_cfg.n_allow == MAX_ALLOW) return;
    memcpy(s_cfg.allow[s_cfg.n_allow], key, 41);
    s_cfg.allow_daemon[s_cfg.n_allow++] = (uint8_t)daemon;
}

/* a file of public keys, one a line ("public=" lines of key files too); missing_ok: no file, no keys */
static int s_allow_file(const char *path, int daemon, int missing_ok, g4_err_t *err)
{
    FILE *g = fopen(path, "r");
    if (!g) return missing_ok ? 0 : g4_err_set(err, G4_ERR_IO, "cannot read the key list %s", path);
    char line[256];
    while (fgets(line, sizeof line, g)) {
        char k[41];
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ')) line[--n] = 0;
        if (s_read_key(line, "public", k)) s_allow(k, daemon);
        else if (n == 40) { /* a bare Z85 key ('=' and '#' are Z85 characters too) */
            memcpy(k, line, 40), k[40] = 0;
            s_allow(k, daemon);
        }
    }
    fclose(g);
    return 0;
}

static int s_load(int serve, g4_err_t *err)
{
    const char *dir = getenv("G4_CURVE_KEYS"), *secret = getenv("G4_CURVE_SECRET");
    char path[4096];
    int rc;
    if (dir && *dir) {
        /* a daemon serves with the daemon key; a client takes its own key when the set has one */
        snprintf(path, sizeof path, "%s/client.key", dir);
        FILE *probe = serve ? NULL : fopen(path, "r");
        if (probe) fclose(probe);
        else snprintf(path, sizeof path, "%s/daemon.key", dir);
        if ((rc = s_read_pair(path, err))) return rc;
        snprintf(path, sizeof path, "%s/daemon.pub", dir);
        if ((rc = s_read_pub("G4_CURVE_KEYS", path, s_cfg.server, err))) return rc;
        s_allow(s_cfg.server, 1);
        snprintf(path, sizeof path, "%s/client.pub", dir);
        if ((rc = s_allow_file(path, 0, 1, err))) return rc;
    } else if (secret && *secret) {
        if ((rc = s_read_pair(secret, err))) return rc;
        memcpy(s_cfg.server, s_cfg.pub, sizeof s_cfg.server);
        if (serve) s_allow(s_cfg.pub, 1); /* one cluster key: this process's own is a daemon's */
    } else {
        return 0;
    }
    const char *server = getenv("G4_CURVE_SERVER");
    if (server && *server && (rc = s_read_pub("G4_CURVE_SERVER", server, s_cfg.server, err))) return rc;
    s_allow(s_cfg.server, 1); /* the servers' key is a daemon's */
    const char *daemons = getenv("G4_CURVE_DAEMONS");
    if (daemons && *daemons && (rc = s_allow_file(daemons, 1, 0, err))) return rc;
    const char *allow = getenv("G4_CURVE_ALLOW");
    if (allow && *allow && (rc = s_allow_file(allow, 0, 0, err))) return rc;
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
        int ok = 0, known = 0;
        char key[41] = "", user[48] = "";
        /* the domain says who may connect: "g4-daemon" daemons only, "g4" clients too */
        const int daemon_only = n > 2 && zmq_msg_size(&part[2]) == 9 && !memcmp(zmq_msg_data(&part[2]), "g4-daemon", 9);
        const int domain_ok = daemon_only || (n > 2 && zmq_msg_size(&part[2]) == 2 && !memcmp(zmq_msg_data(&part[2]), "g4", 2));
        if (n == 7 && domain_ok && zmq_msg_size(&part[5]) == 5 && !memcmp(zmq_msg_data(&part[5]), "CURVE", 5) &&
            zmq_msg_size(&part[6]) == 32) {
            zmq_z85_encode(key, zmq_msg_data(&part[6]), 32);
            for (int i = 0; i < s_cfg.n_allow && !known; i++)
                if (!strcmp(key, s_cfg.allow[i])) {
                    known = 1;
                    ok = s_cfg.allow_daemon[i] || !daemon_only;
                    snprintf(user, sizeof user, "%s:%s", s_cfg.allow_daemon[i] ? "daemon" : "client", key);
                }
        }
        if (!ok)
            g4_log_warn("curve", "refused a peer%s%s%s", key[0] ? " with key " : " (no CURVE key)", key,
                        known ? ": a client key where only daemon keys may connect" : "");
        const char *status = ok ? "200" : "400", *text = ok ? "OK" : known ? "daemon key required" : "key not allowed";
        zmq_send(rep, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(rep, n > 1 ? zmq_msg_data(&part[1]) : "", n > 1 ? zmq_msg_size(&part[1]) : 0, ZMQ_SNDMORE);
        zmq_send(rep, status, 3, ZMQ_SNDMORE);
        zmq_send(rep, text, strlen(text), ZMQ_SNDMORE);
        zmq_send(rep, ok ? user : "", ok ? strlen(user) : 0, ZMQ_SNDMORE);
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
        rc = s_load(serve, err);
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

void g4_wire_curve_server(void *sock, int peers)
{
    int one = 1;
    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, s_cfg.sec, 40);
    if (peers == G4_WIRE_PEERS_CLIENTS) zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "g4", 2);
    else zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "g4-daemon", 9);
#ifdef ZMQ_ZAP_ENFORCE_DOMAIN
    zmq_setsockopt(sock, ZMQ_ZAP_ENFORCE_DOMAIN, &one, sizeof one); /* no handler, no domain: refused */
#endif
}

void g4_wire_curve_client(void *sock)
{
    zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, s_cfg.server, 40);
    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, s_cfg.pub, 40);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, s_cfg.sec, 40);
}
