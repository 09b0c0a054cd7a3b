/* g4 serve -m MODEL.gguf [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--shards N] [--connect EP] ...
 *
 * The OpenAI-compatible HTTP gateway (gateway/, gw.h) in front of the
 * scheduler: on the embedded stack (started and stopped with the server), on
 * the stack `g4 up` started, or on any scheduler with --connect. This file is
 * the command: its flags, the stack, the life of the process until SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_args.h"
#include "cli_stack.h"
#include "gw.h"

static volatile sig_atomic_t s_stop;
static void s_on_signal(int sig) { (void)sig, s_stop = 1; }

int cli_serve(int argc, char **argv)
{
    cli_stack_opts_t o = {0};
    const char *host = "127.0.0.1", *connect_ep = NULL, *api_key = getenv("G4_API_KEY");
    int port = 8080, max_conn_per_ip = 16, request_timeout_s = 30;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int took;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) o.model = v, i++;
        else if (!strcmp(a, "--host") && v) host = v, i++;
        else if (!strcmp(a, "--port") && v) port = atoi(v), i++;
        else if (!strcmp(a, "--api-key") && v) api_key = v, i++;
        else if (!strcmp(a, "--max-conn-per-ip") && v) max_conn_per_ip = atoi(v), i++;
        else if (!strcmp(a, "--request-timeout") && v) request_timeout_s = atoi(v), i++;
        else if (!strcmp(a, "--connect") && v) connect_ep = v, i++;
        else if ((took = cli_stack_opt(&o, a, v))) i += took - 1;
        else return cli_bad_option("serve", a);
    }
    char ep[300], model_id[256];
    cli_stack_t st;
    int own = 0;
    g4_err_t err;
    /* the port first: a busy one is reported before minutes of loading */
    const int fd = gw_listen(host, port, &err);
    if (fd < 0) {
        cli_error("%s", err.msg);
        return err.code == G4_ERR_RANGE ? 2 : 1;
    }
    if (connect_ep) {
        snprintf(ep, sizeof ep, "%s", connect_ep);
    } else {
        if (o.n_slots <= 0) o.n_slots = 16;
        if (cli_stack_acquire(&o, &st, &own, ep, sizeof ep)) {
            close(fd);
            return 1;
        }
    }
    const char *base = o.model ? strrchr(o.model, '/') : NULL;
    snprintf(model_id, sizeof model_id, "%s", base ? base + 1 : o.model ? o.model : "g4");
    const gw_opts_t go = {.listen_fd = fd, .max_conn_per_ip = max_conn_per_ip, .request_timeout_s = request_timeout_s,
                          .api_key = api_key, .sched_ep = ep, .model_id = model_id};
    gw_server_t *gw = gw_server_start(&go, &err);
    if (!gw) {
        cli_error("%s", err.msg);
        if (own) cli_stack_stop(&st);
        return 1;
    }
    const int v6 = strchr(host, ':') != NULL;
    fprintf(stderr, "g4 serve: http://%s%s%s:%d/ (chat page; API under /v1; scheduler %s)%s\n", v6 ? "[" : "", host,
            v6 ? "]" : "", port, ep,
            api_key && *api_key ? ", API key required" : "");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!s_stop) usleep(100000);
    gw_server_stop(&gw);
    if (own) cli_stack_stop(&st);
    return 0;
}
