/* g4 keygen DIR [--force]            the key set of a stack (G4_CURVE_KEYS=DIR)
 * g4 keygen --out PREFIX [--force]   one key pair (G4_CURVE_SECRET=PREFIX.key)
 *
 * The set: DIR/daemon.key + daemon.pub (every daemon: schedulerd, tokenizerd,
 * shardd, encoderd — may register, serve stages, send results) and
 * DIR/client.key + client.pub (the g4 command and the gateway on other hosts —
 * may submit requests, nothing else); DIR is made 0700, .key files 0600.
 * Existing keys are never overwritten without --force (a stack running on
 * them would lock its own members out). Without DIR or --out, one pair goes
 * to stdout. See docs/security.md. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "cli.h"

/* Writes PREFIX.key (0600: public= and secret= lines) and PREFIX.pub; 0 or 1 (said). */
static int s_write_pair(const char *prefix, int force)
{
    char pub[41], sec[41], key[4096], pubf[4096];
    snprintf(key, sizeof key, "%s.key", prefix);
    snprintf(pubf, sizeof pubf, "%s.pub", prefix);
    if (!force && (access(key, F_OK) == 0 || access(pubf, F_OK) == 0)) {
        cli_error("%s exists: not overwritten (--force replaces it; every process using it then needs the new key)",
                  access(key, F_OK) == 0 ? key : pubf);
        return 1;
    }
    if (zmq_curve_keypair(pub, sec) != 0) {
        cli_error("this libzmq has no CURVE support (built without libsodium)");
        return 1;
    }
    unlink(key); /* (--force: a new file, created 0600 whatever the old mode was) */
    int fd = open(key, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        cli_error("%s: %s", key, strerror(errno));
        if (fd >= 0) close(fd);
        return 1;
    }
    fprintf(f, "public=%s\nsecret=%s\n", pub, sec);
    if (fclose(f)) {
        cli_error("%s: %s", key, strerror(errno));
        return 1;
    }
    unlink(pubf);
    fd = open(pubf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644);
    f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        cli_error("%s: %s", pubf, strerror(errno));
        if (fd >= 0) close(fd);
        return 1;
    }
    fprintf(f, "%s\n", pub);
    fclose(f);
    return 0;
}

int cli_keygen(int argc, char **argv)
{
    const char *out = NULL, *dir = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--force")) force = 1;
        else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else {
            cli_error("usage: g4 keygen DIR [--force] | g4 keygen --out PREFIX [--force]");
            return 2;
        }
    }
    if (out && dir) {
        cli_error("g4 keygen: DIR (the key set) or --out PREFIX (one pair), not both");
        return 2;
    }
    if (out) {
        if (s_write_pair(out, force)) return 1;
        printf("wrote %s.key (keep secret) and %s.pub\n", out, out);
        return 0;
    }
    if (!dir) {
        char pub[41], sec[41];
        if (zmq_curve_keypair(pub, sec) != 0) {
            cli_error("this libzmq has no CURVE support (built without libsodium)");
            return 1;
        }
        printf("public=%s\nsecret=%s\n", pub, sec);
        return 0;
    }
    if (mkdir(dir, 0700) && errno != EEXIST) {
        cli_error("%s: %s", dir, strerror(errno));
        return 1;
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/daemon.key", dir);
    if (!force && access(p, F_OK) == 0) {
        cli_error("%s already holds a key set: not overwritten (--force makes a new one; every daemon and client "
                  "then needs it)", dir);
        return 1;
    }
    const char *roles[2] = {"daemon", "client"};
    for (int r = 0; r < 2; r++) {
        snprintf(p, sizeof p, "%s/%s", dir, roles[r]);
        if (s_write_pair(p, force)) return 1;
    }
    printf("wrote the key set in %s:\n"
           "  daemon.key  every daemon (schedulerd, tokenizerd, shardd, encoderd): G4_CURVE_KEYS=%s\n"
           "  client.key  the g4 command and the gateway: G4_CURVE_KEYS=DIR holding client.key and daemon.pub\n"
           "  *.pub       public keys (daemon.pub: the servers' key; client.pub: allowed clients)\n"
           "keep daemon.key on the stack's hosts only\n",
           dir, dir);
    return 0;
}
