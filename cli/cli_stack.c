/* cli_stack — see cli_stack.h. */
#include "cli_stack.h"
#include "cli_progress.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "enc_model.h"
#include "g4_alloc.h"
#include "g4_client.h"
#include "g4_draft.h"
#include "g4_model.h"
#include "g4_wire.h"

/* SIGINT / SIGTERM while this process owns a stack: the request in flight is
 * cancelled and the caller stops the stack (its daemons and run directory go);
 * a second signal ends the process at once. */
static volatile sig_atomic_t s_interrupted;

static void s_on_interrupt(int sig)
{
    if (s_interrupted) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    s_interrupted = sig;
}

int cli_stack_interrupted(void) { return s_interrupted != 0; }

void cli_stack_interrupt_clear(void) { s_interrupted = 0; }

static void s_catch_interrupts(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_interrupt;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

const char *cli_run_dir(char *buf, size_t size)
{
    const char *e = getenv("G4_RUN_DIR");
    if (e && *e) snprintf(buf, size, "%s", e);
    else snprintf(buf, size, "/tmp/g4-%u", (unsigned)getuid());
    return buf;
}

static int s_bin(const char *name, char *out, size_t size)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            if (snprintf(out, size, "%s/%s", self, name) < (int)size && access(out, X_OK) == 0) return 0;
        }
    }
    const char *e = getenv("G4_BIN_DIR");
    if (e) {
        snprintf(out, size, "%s/%s", e, name);
        if (access(out, X_OK) == 0) return 0;
    }
    snprintf(out, size, "%s", name); /* PATH */
    return 0;
}

int cli_split_layers(const char *model, int n_shards, int n_ctx, int n_slots, const char *devices, int *bounds,
                     int *gpu, int max_bounds, uint64_t *cache_bytes, char *err, size_t err_size)
{
    cli_plan_t *cp = g4_malloc(sizeof *cp);
    if (!cp) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    if (devices) { /* a stage per device (the CPU left out when the GPUs hold it all) */
        int k = cli_plan_devices(model, devices, n_ctx > 0 ? n_ctx : CLI_PLAN_CTX, n_slots > 0 ? n_slots : CLI_PLAN_SLOTS,
                                 cp, err, err_size);
        if (k == 0 && cp->plan.n_stages >= max_bounds) {
            snprintf(err, err_size, "--devices: more than %d stages", max_bounds - 1);
            k = -1;
        }
        if (k == 0 && !cp->plan.fits) {
            for (int i = 0; i < cp->plan.n_stages && !k; i++) {
                const g4_plan_stage_t *st = &cp->plan.stages[i];
                if (!st->fits)
                    snprintf(err, err_size, "layers %d-%d need %.2f GiB on %s, which has %.2f GiB (g4 plan -m %s --devices %s)",
                             st->layer_begin, st->layer_end, st->total_bytes / 1073741824.0, cp->dev_name[st->node],
                             cp->devs[st->node].memory_bytes / 1073741824.0, model, devices),
                        k = -1;
            }
        }
        if (k == 0) {
            k = cp->plan.n_stages;
            for (int i = 0; i < k; i++) bounds[i] = cp->plan.stages[i].layer_begin, gpu[i] = cp->devs[cp->plan.stages[i].node].gpu;
            bounds[k] = cp->n_layer;
            if (cache_bytes) *cache_bytes = cli_plan_cache_bytes(cp, k);
        }
        g4_free(cp);
        return k;
    }
    for (int i = 0; gpu && i < max_bounds; i++) gpu[i] = 0;
    /* the plan's layer count (the GGUF's header), or its stages */
    int k = cli_plan_make(model, NULL, 0, n_ctx > 0 ? n_ctx : CLI_PLAN_CTX, n_slots > 0 ? n_slots : CLI_PLAN_SLOTS, cp,
                          err, err_size);
    if (k == 0 && (n_shards > 0 || cp->plan.n_stages >= max_bounds)) { /* --shards N, or more nodes than bounds */
        k = g4_plan_even(cp->n_layer, n_shards > 0 ? n_shards : cp->plan.n_stages, bounds, max_bounds);
    } else if (k == 0) {
        k = cp->plan.n_stages;
        for (int i = 0; i < k; i++) bounds[i] = cp->plan.stages[i].layer_begin;
        bounds[k] = cp->n_layer;
    }
    if (cache_bytes) *cache_bytes = k > 0 ? cli_plan_cache_bytes(cp, k) : 0;
    g4_free(cp);
    return k;
}

static int s_is_assistant(const char *path)
{
    g4_err_t err;
    g4_gguf_t *g = g4_gguf_open(path, &err);
    const int r = g && g4_draft_is_assistant(g);
    g4_gguf_destroy(&g);
    return r;
}

static int s_numa_nodes(void)
{
    g4_topo_t *t = g4_topo_load(NULL, NULL);
    const int n = t ? g4_topo_n_nodes(t) : 1;
    g4_topo_destroy(&t);
    return n;
}

static int s_spawn_at(cli_stack_t *st, int k, int detach)
{
    char path[PATH_MAX], log[400];
    const char *name = st->name[k];
    s_bin(st->bin[k], path, sizeof path);
    snprintf(log, sizeof log, "%s/%s.log", st->dir, name);
    char *argv[CLI_STACK_ARGS + 2];
    int argc = 0;
    argv[argc++] = path;
    for (int i = 0; st->args[k][i] && argc < CLI_STACK_ARGS + 1; i++) argv[argc++] = st->args[k][i];
    argv[argc] = NULL;
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (detach) setsid();
        else {
            prctl(PR_SET_PDEATHSIG, SIGTERM); /* the daemons die with the g4 that started them */
            /* a group of their own: Ctrl-C on the terminal reaches g4 (which
             * stops the reply and keeps the stack), not the daemons */
            setpgid(0, 0);
            if (getppid() != parent) _exit(1);
        }
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        execv(path, argv);
        if (strchr(path, '/') == NULL) execvp(path, argv);
        fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    st->pid[k] = pid;
    st->started_ms[k] = g4_wire_now_ms();
    return 0;
}

int cli_stack_spawn(cli_stack_t *st, const char *bin, const char *name, char *const *args, int detach)
{
    if (st->n == CLI_STACK_MAX) return -1;
    const int k = st->n;
    snprintf(st->name[k], sizeof st->name[0], "%s", name);
    snprintf(st->bin[k], sizeof st->bin[0], "%s", bin);
    int a = 0;
    for (; args[a] && a < CLI_STACK_ARGS - 1; a++) st->args[k][a] = g4_strndup(args[a], strlen(args[a]));
    st->args[k][a] = NULL;
    st->restarts[k] = st->given_up[k] = 0;
    if (s_spawn_at(st, k, detach)) {
        for (int i = 0; i < a; i++) g4_free(st->args[k][i]), st->args[k][i] = NULL;
        return -1;
    }
    st->n++;
    return 0;
}

int cli_stack_respawn(cli_stack_t *st, int i) { return s_spawn_at(st, i, st->detach); }

void cli_stack_forget(cli_stack_t *st)
{
    for (int i = 0; i < st->n; i++)
        for (int a = 0; a < CLI_STACK_ARGS && st->args[i][a]; a++) g4_free(st->args[i][a]), st->args[i][a] = NULL;
}

void cli_stack_write_state(cli_stack_t *st, const cli_stack_opts_t *o, pid_t supervisor)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "scheduler", st->sched_ep);
    if (supervisor > 0) cJSON_AddNumberToObject(j, "supervisor", supervisor);
    if (supervisor > 0) cJSON_AddNumberToObject(j, "supervisor_start", (double)cli_proc_start(supervisor));
    cJSON *d = cJSON_AddArrayToObject(j, "daemons");
    for (int i = 0; i < st->n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", st->name[i]);
        cJSON_AddNumberToObject(e, "pid", st->pid[i]);
        cJSON_AddNumberToObject(e, "start", (double)cli_proc_start(st->pid[i]));
        cJSON_AddItemToArray(d, e);
    }
    char *s = cJSON_Print(j);
    char path[300], tmp[310];
    snprintf(path, sizeof path, "%s/stack.json", st->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w"); /* replaced at once: a reader never sees half a file */
    if (f) fputs(s, f), fclose(f), rename(tmp, path);
    cJSON_free(s);
    cJSON_Delete(j);
}

/* The model's width (its header), or -1 after saying why it is not a model g4 runs. */
static int s_check_model(const char *model)
{
    g4_err_t err;
    g4_gguf_t *g = g4_gguf_open(model, &err);
    g4_hparams_t *hp = g ? g4_malloc(sizeof *hp) : NULL;
    int width = -1;
    const int is_gguf = g != NULL;
    if (g && !hp) g4_err_set(&err, G4_ERR_NOMEM, "out of memory");
    if (hp && !g4_hparams_read(g, hp, &err)) width = (int)hp->n_embd;
    g4_free(hp);
    g4_gguf_destroy(&g);
    enc_info_t info;
    if (width < 0 && is_gguf && enc_model_probe(model, &info, NULL) == 0)
        cli_error("%s is a projector (mmproj) file: give it with --mmproj, the model with -m", model);
    else if (width < 0)
        cli_error("%s", err.msg);
    return width;
}

int cli_check_files(const char *model, const char *mmproj)
{
    const int width = model ? s_check_model(model) : 0;
    if (width < 0) return 1;
    if (!mmproj) return 0;
    g4_err_t err;
    enc_info_t info;
    if (enc_model_probe(mmproj, &info, &err)) {
        cli_error("--mmproj %s", err.msg);
        return 1;
    }
    const int pw = info.v_proj_dim ? info.v_proj_dim : info.a_proj_dim;
    if (width > 0 && ((info.v_proj_dim && info.v_proj_dim != width) || (info.a_proj_dim && info.a_proj_dim != width))) {
        cli_error("--mmproj %s: the projector makes embeddings of width %d, the model %s has %d (a projector of "
                  "another model?)", mmproj, pw, model, width);
        return 1;
    }
    return 0;
}

int cli_check_draft(const char *path)
{
    g4_err_t err;
    g4_gguf_t *g = g4_gguf_open(path, &err);
    if (!g) {
        cli_error("--draft-model %s", err.msg);
        return 1;
    }
    const int assistant = g4_draft_is_assistant(g);
    g4_gguf_destroy(&g);
    return assistant ? 0 : s_check_model(path) < 0;
}

int cli_stack_start(cli_stack_t *st, const cli_stack_opts_t *o)
{
    memset(st, 0, sizeof *st);
    if (cli_check_files(o->model, o->mmproj)) return 1; /* before a daemon or a directory exists */
    if (o->draft_model && cli_check_draft(o->draft_model)) return 1;
    st->detach = o->detach;
    if (o->run_dir) {
        snprintf(st->dir, sizeof st->dir, "%s", o->run_dir);
        if (mkdir(st->dir, 0700) && errno != EEXIST) {
            cli_error("%s: %s", st->dir, strerror(errno));
            return 1;
        }
        if (cli_run_dir_check(st->dir)) return 1;
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(st->dir, sizeof st->dir, "%s/g4-run-XXXXXX", tmp && strlen(tmp) < 100 ? tmp : "/tmp");
        if (!mkdtemp(st->dir)) {
            cli_error("mkdtemp: %s", strerror(errno));
            return 1;
        }
        st->owned_dir = 1;
    }
    chmod(st->dir, 0700);
    int bounds[CLI_STACK_MAX];
    char why[256];
    const int n_numa = s_numa_nodes();
    int want = o->n_shards > 0 ? o->n_shards : n_numa;
    /* --shards N: N even stages; else g4 plan's (one per NUMA node, layers by bandwidth or memory) */
    uint64_t cache_bytes = 0;
    int gpu[CLI_STACK_MAX];
    if (o->devices) want = 1; /* (the plan says how many) */
    int n = cli_split_layers(o->model, o->n_shards, o->n_ctx, o->n_slots, o->devices, bounds, gpu, CLI_STACK_MAX - 4,
                             &cache_bytes, why, sizeof why);
    if (n < 0) {
        cli_error("%s", why);
        cli_stack_stop(st);
        return 1;
    }
    if (n < want && !o->quiet)
        fprintf(stderr, "note: %d shard(s) instead of %d: a shard holds one layer at least\n", n, want);
    if (o->draft_model && s_is_assistant(o->draft_model) && bounds[n] >= 2 && bounds[n] - bounds[n - 1] < 2) {
        /* the assistant reads the caches of the last two layers: the last shard holds both */
        bounds[n - 1] = bounds[n] - 2;
        for (int i = n - 2; i >= 1 && bounds[i] >= bounds[i + 1]; i--) bounds[i] = bounds[i + 1] - 1;
        while (n > 1 && bounds[1] <= 0) {
            for (int i = 1; i < n; i++) bounds[i] = bounds[i + 1];
            n--;
        }
        if (!o->quiet)
            fprintf(stderr, "note: the assistant reads the last two layers' caches: the last shard holds layers %d-%d\n",
                    bounds[n - 1], bounds[n]);
    }
    snprintf(st->sched_ep, sizeof st->sched_ep, "ipc://%s/sched.ctl", st->dir);
    char results[256], tok_ep[256];
    snprintf(results, sizeof results, "ipc://%s/sched.res", st->dir);
    snprintf(tok_ep, sizeof tok_ep, "ipc://%s/tok.sock", st->dir);
    {
        char *a[] = {"--listen", st->sched_ep, "--results", results, o->no_prefix_cache ? "--no-prefix-cache" : NULL, NULL};
        if (cli_stack_spawn(st, "schedulerd", "schedulerd", a, o->detach)) goto fail;
    }
    {
        char *a[] = {"--model", (char *)o->model, "--listen", tok_ep, "--scheduler", st->sched_ep, "--name", "tokenizer",
                     o->template_path ? "--template" : NULL, (char *)o->template_path, NULL};
        if (cli_stack_spawn(st, "tokenizerd", "tokenizer", a, o->detach)) goto fail;
    }
    if (o->mmproj) {
        char enc_ep[256], threads[16];
        snprintf(enc_ep, sizeof enc_ep, "ipc://%s/enc.sock", st->dir);
        snprintf(threads, sizeof threads, "%d", o->threads);
        char *a[] = {"--mmproj", (char *)o->mmproj, "--listen", enc_ep, "--scheduler", st->sched_ep, "--name", "encoder",
                     o->threads > 0 ? "--threads" : NULL, threads, NULL};
        if (cli_stack_spawn(st, "encoderd", "encoder", a, o->detach)) goto fail;
        st->want_encoder = 1;
    }
    for (int i = 0; i < n; i++) {
        char ep[256], layers[32], name[64], threads[16], ctx[16], slots[16], node[16], cache[24], dev[16];
        snprintf(ep, sizeof ep, "ipc://%s/shard-%d.sock", st->dir, i);
        snprintf(layers, sizeof layers, "%d-%d", bounds[i], bounds[i + 1]);
        snprintf(name, sizeof name, "shard-%d", i);
        snprintf(threads, sizeof threads, "%d", o->threads);
        snprintf(ctx, sizeof ctx, "%d", o->n_ctx);
        snprintf(slots, sizeof slots, "%d", o->n_slots > 0 ? o->n_slots : 16);
        char *a[36];
        int k = 0;
        a[k++] = "--model", a[k++] = (char *)o->model, a[k++] = "--layers", a[k++] = layers;
        a[k++] = "--listen", a[k++] = ep, a[k++] = "--scheduler", a[k++] = st->sched_ep;
        a[k++] = "--name", a[k++] = name, a[k++] = "--slots", a[k++] = slots;
        if (o->threads > 0) a[k++] = "--threads", a[k++] = threads;
        if (o->n_ctx > 0) a[k++] = "--ctx", a[k++] = ctx;
        if (o->kv_type) a[k++] = "--kv-type", a[k++] = (char *)g4_kv_type_name(o->kv_type);
        if (o->mmap) a[k++] = "--mmap";
        /* the prefix cache: what was asked, else the plan's share of the memory left */
        snprintf(cache, sizeof cache, "%ld", o->no_prefix_cache ? 0 : o->cache_mb > 0 ? o->cache_mb : (long)(cache_bytes >> 20));
        a[k++] = "--cache-mb", a[k++] = cache;
        char dmax[16], dmin[16], dpmin[32];
        if (o->draft_model && i == n - 1) { /* the stage that samples drafts */
            a[k++] = "--draft-model", a[k++] = (char *)o->draft_model;
            snprintf(dmax, sizeof dmax, "%d", o->draft_max), snprintf(dmin, sizeof dmin, "%d", o->draft_min);
            snprintf(dpmin, sizeof dpmin, "%g", o->draft_p_min);
            if (o->draft_max > 0) a[k++] = "--draft-max", a[k++] = dmax;
            a[k++] = "--draft-min", a[k++] = dmin, a[k++] = "--draft-p-min", a[k++] = dpmin;
        }
        if (gpu[i]) a[k++] = "--device", a[k++] = (char *)g4_device_name(gpu[i], dev, sizeof dev);
        if (n_numa > 1 && n == n_numa && !o->devices) { /* one shard per NUMA node, pinned there (g4 plan) */
            snprintf(node, sizeof node, "%d", i);
            a[k++] = "--numa-node", a[k++] = node;
        }
        a[k] = NULL;
        /* shards on shared cores take turns: idle OpenMP threads must sleep, not spin */
        if (n > 1 && !getenv("OMP_WAIT_POLICY")) setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        if (cli_stack_spawn(st, "shardd", name, a, o->detach)) goto fail;
    }
    if (o->detach) cli_stack_write_state(st, o, 0);
    return 0;
fail:
    cli_error("could not start the daemons");
    cli_stack_stop(st);
    return 1;
}

void cli_stack_print_logs(cli_stack_t *st)
{
    for (int i = 0; i < st->n; i++) {
        char path[300], line[512];
        snprintf(path, sizeof path, "%s/%s.log", st->dir, st->name[i]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        /* the last few lines */
        char ring[6][512];
        int k = 0;
        while (fgets(line, sizeof line, f)) snprintf(ring[k++ % 6], sizeof ring[0], "%s", line);
        fclose(f);
        for (int j = k > 6 ? k - 6 : 0; j < k; j++) fprintf(stderr, "  %s: %s", st->name[i], ring[j % 6]);
    }
}

int cli_stack_wait_ready(cli_stack_t *st, int timeout_ms)
{
    const uint64_t t0 = g4_wire_now_ms();
    cli_progress_t prog;
    cli_progress_init(&prog, "starting", "", 1);
    while (g4_wire_now_ms() - t0 < (uint64_t)timeout_ms && !s_interrupted) {
        for (int i = 0; i < st->n; i++) {
            int status;
            if (waitpid(st->pid[i], &status, WNOHANG) == st->pid[i]) {
                cli_error("%s exited (%s %d) while starting:", st->name[i], WIFEXITED(status) ? "status" : "signal",
                          WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
                st->pid[i] = 0;
                cli_stack_print_logs(st);
                return 1;
            }
        }
        G4__V1__Envelope *owner;
        G4__V1__StatusReply *r = g4_client_status(st->sched_ep, 200, &owner);
        int ready = r && r->ready;
        if (ready && st->want_encoder) {
            ready = g4_client_encoder_ready(r);
        }
        char line[96];
        snprintf(line, sizeof line, "%zu of %d daemons loaded and registered", r ? r->n_daemons : 0, st->n - 1);
        cli_progress_text(&prog, line);
        if (owner) g4__v1__envelope__free_unpacked(owner, NULL);
        if (ready) {
            cli_progress_clear(&prog);
            return 0;
        }
        usleep(20000);
    }
    cli_progress_clear(&prog);
    if (s_interrupted) {
        cli_error("interrupted");
        return 1;
    }
    cli_error("the stack did not become ready within %d s:", timeout_ms / 1000);
    cli_stack_print_logs(st);
    return 1;
}

void cli_stack_stop(cli_stack_t *st)
{
    cli_stack_supervise_stop(st);
    /* shards and tokenizer first, the scheduler last (it drains) */
    for (int i = st->n - 1; i >= 0; i--)
        if (st->pid[i] > 0) kill(st->pid[i], SIGTERM);
    const uint64_t t0 = g4_wire_now_ms();
    for (int i = 0; i < st->n; i++) {
        while (st->pid[i] > 0) {
            if (waitpid(st->pid[i], NULL, WNOHANG) == st->pid[i] || (kill(st->pid[i], 0) && errno == ESRCH)) {
                st->pid[i] = 0;
                break;
            }
            if (g4_wire_now_ms() - t0 > 5000) {
                kill(st->pid[i], SIGKILL);
                waitpid(st->pid[i], NULL, 0);
                st->pid[i] = 0;
                break;
            }
            usleep(10000);
        }
    }
    cli_stack_forget(st);
    if (st->owned_dir) {
        /* the daemons are gone: their logs and any socket a daemon killed
         * (or not closing its listener) left behind go with the directory */
        DIR *dir = opendir(st->dir);
        for (struct dirent *e; dir && (e = readdir(dir));) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char path[512];
            snprintf(path, sizeof path, "%s/%s", st->dir, e->d_name);
            unlink(path);
        }
        if (dir) closedir(dir);
        rmdir(st->dir);
    }
}

int cli_stack_find(char *dir, size_t dir_size, char *ep, size_t ep_size)
{
    cli_run_dir(dir, dir_size);
    struct stat sb;
    if (lstat(dir, &sb) || cli_run_dir_check(dir)) return -1; /* (absent: no stack, silently) */
    char path[300];
    snprintf(path, sizeof path, "%s/stack.json", dir);
    size_t len;
    char *buf = cli_read_file(path, &len);
    if (!buf) return -1;
    cJSON *j = cJSON_Parse(buf);
    g4_free(buf);
    const cJSON *s = j ? cJSON_GetObjectItemCaseSensitive(j, "scheduler") : NULL;
    int rc = -1;
    if (cJSON_IsString(s)) {
        snprintf(ep, ep_size, "%s", s->valuestring);
        rc = 0;
    }
    cJSON_Delete(j);
    return rc;
}

int cli_proc_is_g4(int pid, const char *want)
{
    char path[64], exe[4096];
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    const ssize_t n = pid > 0 ? readlink(path, exe, sizeof exe - 1) : -1;
    if (n <= 0) return 0;
    exe[n] = 0;
    /* a binary replaced since it started (a rebuild, cmake --install) still runs it */
    const size_t del = strlen(" (deleted)");
    if ((size_t)n > del && !strcmp(exe + n - del, " (deleted)")) exe[n - del] = 0;
    const char *base = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
    if (want) return !strcmp(base, want);
    return !strcmp(base, "shardd") || !strcmp(base, "tokenizerd") || !strcmp(base, "schedulerd") ||
           !strcmp(base, "encoderd");
}

unsigned long long cli_proc_start(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    const int fd = pid > 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    const ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    unsigned long long start = 0;
    /* after ") ": field 3 (state) ... field 22 (starttime) */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &start) != 1)
        return 0;
    return start;
}

int cli_proc_is_recorded(int pid, const char *want, unsigned long long start)
{
    return start && cli_proc_is_g4(pid, want) && cli_proc_start(pid) == start;
}

int cli_run_dir_check(const char *dir)
{
    struct stat sb;
    if (lstat(dir, &sb)) {
        cli_error("%s: %s", dir, strerror(errno));
        return -1;
    }
    const char *why = S_ISLNK(sb.st_mode)          ? "is a symbolic link"
                      : !S_ISDIR(sb.st_mode)       ? "is not a directory"
                      : sb.st_uid != getuid()      ? "belongs to another user"
                      : (sb.st_mode & 077) != 0    ? "is open to other users (want mode 0700)"
                                                   : NULL;
    if (why) cli_error("run directory %s %s: not trusted (remove it, or set $G4_RUN_DIR)", dir, why);
    return why ? -1 : 0;
}

/* pids of g4 daemons whose command line names dir (their sockets are there) */
static int s_daemons_in(const char *dir, pid_t *pids, int max)
{
    char pat[300]; /* a path inside dir */
    snprintf(pat, sizeof pat, "%s/", dir);
    DIR *proc = opendir("/proc");
    int n = 0;
    for (struct dirent *e; proc && n < max && (e = readdir(proc));) {
        const pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0 || pid == getpid() || !cli_proc_is_g4(pid, NULL)) continue;
        char path[64], cmd[4096];
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        const ssize_t len = read(fd, cmd, sizeof cmd - 1);
        close(fd);
        if (len <= 0) continue;
        cmd[len] = 0;
        int hit = 0;
        for (ssize_t i = 0; i < len && !hit; i += (ssize_t)strlen(cmd + i) + 1) hit = strstr(cmd + i, pat) != NULL;
        if (hit) pids[n++] = pid;
    }
    if (proc) closedir(proc);
    return n;
}

int cli_stack_stop_strays(const char *dir)
{
    pid_t pids[CLI_STACK_MAX];
    const int n = s_daemons_in(dir, pids, CLI_STACK_MAX);
    for (int i = 0; i < n; i++) kill(pids[i], SIGTERM);
    const uint64_t t0 = g4_wire_now_ms();
    for (int i = 0; i < n; i++)
        while (kill(pids[i], 0) == 0 && g4_wire_now_ms() - t0 < 5000) usleep(20000);
    for (int i = 0; i < n; i++)
        if (kill(pids[i], 0) == 0) kill(pids[i], SIGKILL);
    return n;
}

int cli_stack_find_embedded(char *ep, size_t ep_size)
{
    const char *tmp = getenv("TMPDIR");
    char pat[300];
    snprintf(pat, sizeof pat, "%s/g4-run-*/sched.ctl", tmp && strlen(tmp) < 100 ? tmp : "/tmp");
    glob_t g;
    if (glob(pat, 0, NULL, &g)) return -1;
    time_t best_t = 0;
    int best = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        struct stat sb;
        if (stat(g.gl_pathv[i], &sb) || sb.st_uid != getuid() || !S_ISSOCK(sb.st_mode)) continue;
        if (best < 0 || sb.st_mtime > best_t) best = (int)i, best_t = sb.st_mtime;
    }
    if (best >= 0) snprintf(ep, ep_size, "ipc://%s", g.gl_pathv[best]);
    globfree(&g);
    return best >= 0 ? 0 : -1;
}

int cli_stack_acquire(const cli_stack_opts_t *o, cli_stack_t *st, int *own, char *ep, size_t ep_size)
{
    /* a stack that is up serves the request; else one is started for it */
    char dir[256];
    *own = 0;
    ep[0] = 0;
    if (o->n_shards == 0 && !o->template_path && cli_stack_find(dir, sizeof dir, ep, ep_size) == 0) {
        G4__V1__Envelope *owner;
        G4__V1__StatusReply *r = g4_client_status(ep, 1000, &owner);
        char want[PATH_MAX];
        const char *m = o->model && realpath(o->model, want) ? want : o->model;
        int usable = r && r->ready && (!m || (r->model && !strcmp(r->model, m)));
        if (usable && o->mmproj) {
            usable = g4_client_encoder_ready(r);
        }
        if (r && r->ready && !usable && m)
            fprintf(stderr, "note: the running stack serves %s; starting one for %s\n", r->model, m);
        if (owner) g4__v1__envelope__free_unpacked(owner, NULL);
        /* without -m there is nothing to start: a stack whose scheduler is
         * being restarted (no answer within 1 s) or whose pipeline is being
         * made whole (a shard replaced) still serves the request, which waits
         * there (queued, or sent again to the restarted scheduler) */
        if (!usable && o->model) ep[0] = 0;
    }
    if (ep[0]) return 0;
    if (!o->model) {
        cli_error("no stack is up: give the model with -m");
        return 2;
    }
    s_catch_interrupts(); /* so that our own stack is stopped and removed */
    if (cli_stack_start(st, o)) return 1;
    *own = 1;
    if (cli_stack_wait_ready(st, 120000)) {
        cli_stack_stop(st);
        *own = 0;
        return 1;
    }
    cli_stack_supervise_start(st); /* a daemon that dies is restarted */
    snprintf(ep, ep_size, "%s", st->sched_ep);
    return 0;
}

int cli_stack_opt(cli_stack_opts_t *o, const char *a, const char *v)
{
    if (!strcmp(a, "--kv-f32")) return o->kv_type = G4_KV_F32, 1;
    if (!strcmp(a, "--mmap")) return o->mmap = 1, 1;
    if (!strcmp(a, "--no-prefix-cache")) return o->no_prefix_cache = 1, 1;
    if (!v) return 0;
    if (!strcmp(a, "--cache-mb")) {
        char *end;
        o->cache_mb = strtol(v, &end, 10);
        if (*end || o->cache_mb < 0) {
            cli_error("--cache-mb wants MiB (0 or more), not '%s'", v);
            o->cache_mb = 0;
            return 0;
        }
        if (!o->cache_mb) o->no_prefix_cache = 1;
        return 2;
    }
    if (!strcmp(a, "--draft-model") || !strcmp(a, "-md")) o->draft_model = v;
    else if (!strcmp(a, "--devices")) o->devices = v;
    else if (!strcmp(a, "--draft-max")) o->draft_max = atoi(v);
    else if (!strcmp(a, "--draft-min")) o->draft_min = atoi(v);
    else if (!strcmp(a, "--draft-p-min")) o->draft_p_min = atof(v);
    else if (!strcmp(a, "--shards")) o->n_shards = atoi(v);
    else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) o->threads = atoi(v);
    else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) o->n_ctx = atoi(v);
    else if (!strcmp(a, "--slots")) o->n_slots = atoi(v);
    else if (!strcmp(a, "--template")) o->template_path = v;
    else if (!strcmp(a, "--mmproj")) o->mmproj = v;
    else if (!strcmp(a, "--kv-type") || !strcmp(a, "-ctk") || !strcmp(a, "-ctv")) {
        if ((o->kv_type = g4_kv_type_from_name(v)) < 0) {
            cli_error("--kv-type must be f16, f32 or q8_0, not '%s'", v);
            o->kv_type = 0;
            return 0;
        }
    } else return 0;
    return 2;
}
