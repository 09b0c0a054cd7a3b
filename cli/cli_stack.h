/* cli_stack — the local stack of daemons the g4 command finds, starts and stops
 * (talking to its scheduler is client/g4_client.h).
 *
 * Embedded: `g4 run` starts schedulerd, tokenizerd and the shards as child
 * processes on ipc:// sockets in a private run directory, uses them and stops
 * them. Persistent: `g4 up` does the same detached, records the stack in
 * RUN_DIR/stack.json, and later commands find it there ($G4_RUN_DIR, default
 * /tmp/g4-UID). Daemon binaries are looked up beside the g4 binary, then in
 * $G4_BIN_DIR. */
#ifndef CLI_STACK_H
#define CLI_STACK_H

#include <stdint.h>
#include <sys/types.h>


#define CLI_STACK_MAX 32

typedef struct cli_stack_opts {
    const char *model;
    const char *template_path; /* chat template override (NULL: the GGUF's) */
    const char *mmproj;        /* vision / audio projector: also start encoderd */
    int n_shards;              /* 0: one per NUMA node (at least 1) */
    int threads;               /* per shard; 0: the shard's cores */
    int n_ctx, n_slots, kv_type; /* G4_KV_* */
    int mmap;                  /* shards compute from the file's mapping (shardd --mmap) */
    const char *devices;       /* "cuda:0,cuda:1,cpu": a shard per device (g4 plan --devices); NULL: the CPU */
    int no_prefix_cache;       /* schedulerd --no-prefix-cache, shards keep none */
    long cache_mb;             /* shardd --cache-mb (0: the shard's default) */
    /* speculative decoding on the last shard (shardd --draft-*): a gemma4-assistant or a draft
     * model; draft_max 0: the shard's default (3) */
    const char *draft_model;
    int draft_max, draft_min;
    double draft_p_min;
    int detach;                /* g4 up */
    const char *run_dir;       /* NULL: a fresh private directory */
    int quiet;
} cli_stack_opts_t;

#define CLI_STACK_ARGS 40

typedef struct cli_stack {
    char dir[200];
    char sched_ep[256];
    pid_t pid[CLI_STACK_MAX];
    char name[CLI_STACK_MAX][64];
    int n;
    int owned_dir;
    int want_encoder; /* ready means an encoder has registered too */
    /* how each daemon was started, for restarts (cli_supervise.c) */
    char bin[CLI_STACK_MAX][256];
    char *args[CLI_STACK_MAX][CLI_STACK_ARGS]; /* owned copies, NULL-terminated */
    int detach;
    int restarts[CLI_STACK_MAX], given_up[CLI_STACK_MAX];
    uint64_t restart_at_ms[CLI_STACK_MAX], started_ms[CLI_STACK_MAX];
    struct cli_supervisor *sup; /* the supervising thread of an embedded stack */
} cli_stack_t;

/* The options that shape a stack (--shards --threads/-t --ctx/-c --slots
 * --template --mmproj --kv-f32) for g4 up / serve: returns how many
 * arguments it took (2 with a value, 1 for a flag), 0 when `a` is none of them. */
int cli_stack_opt(cli_stack_opts_t *o, const char *a, const char *v);

/* Layer boundaries of the stack's shards: bounds[0] = 0 < … < bounds[k] =
 * n_layer. n_shards > 0: that many even stages (at most one per layer);
 * else g4 plan's stages on this machine (cli_plan_make with n_ctx, n_slots;
 * 0: the plan's defaults). Reads the GGUF's header only; returns k, or -1
 * with err. cache_bytes (may be NULL): each shard's default prefix cache
 * (cli_plan_cache_bytes). devices (NULL: none): the stages are the
 * device plan's (cli_plan_devices) and gpu[i] (N + 1 for cuda:N, 0 for the
 * CPU) says where stage i runs. */
int cli_split_layers(const char *model, int n_shards, int n_ctx, int n_slots, const char *devices, int *bounds,
                     int *gpu, int max_bounds, uint64_t *cache_bytes, char *err, size_t err_size);

/* The files a stack (or an in-process run) is given, checked before anything
 * starts: model (NULL: none) a GGUF of a model g4 runs, mmproj (NULL: none) a
 * projector whose embeddings have the model's width. 0, or 1 after saying why
 * in one line. */
int cli_check_files(const char *model, const char *mmproj);
/* A --draft-model: a gemma4-assistant GGUF or a model g4 runs (0, or 1 after saying why). */
int cli_check_draft(const char *path);

/* Starts the daemons (after cli_check_files). 0, or 1 after saying why. */
int cli_stack_start(cli_stack_t *st, const cli_stack_opts_t *o);
/* The stack to use: the one that is up (when it serves o->model and no
 * stack-shaping option is given), else a new embedded one (*own = 1: stop it
 * with cli_stack_stop). Writes the scheduler endpoint to ep. */
int cli_stack_acquire(const cli_stack_opts_t *o, cli_stack_t *st, int *own, char *ep, size_t ep_size);
/* Waits until the scheduler reports a complete pipeline and a tokenizer. */
int cli_stack_wait_ready(cli_stack_t *st, int timeout_ms);
void cli_stack_stop(cli_stack_t *st);
/* The last lines of each daemon's log, on stderr (a start or a request failed). */
void cli_stack_print_logs(cli_stack_t *st);
/* 1 once SIGINT / SIGTERM came while this process owned a stack (it is being stopped). */
int cli_stack_interrupted(void);
/* The interruption handled (g4 chat stopped a reply): the next one stops the next reply. */
void cli_stack_interrupt_clear(void);
/* Starts one more daemon of the stack (swap, restart); argv without the binary path. */
int cli_stack_spawn(cli_stack_t *st, const char *bin, const char *name, char *const *args, int detach);
/* Frees what the record keeps to restart its daemons (they go on running). */
void cli_stack_forget(cli_stack_t *st);
/* Starts daemon i again with the arguments it was first started with. */
int cli_stack_respawn(cli_stack_t *st, int i);

/* ---- supervision (cli_supervise.c) ----
 * A daemon of the stack that dies (a signal, a non-zero exit) is started again
 * with its command line after a backoff (0.25 s doubling to 8 s; back to the
 * start after 60 s of running), at most 5 times in 2 minutes; each restart is
 * logged. A clean exit (SIGTERM, g4 swap retiring it) is not restarted.
 * Returns how many daemons it restarted in this call. */
int cli_stack_supervise(cli_stack_t *st);
/* Supervision on a thread of this process (the embedded stack of g4 run /
 * chat / serve); cli_stack_stop ends it. */
int cli_stack_supervise_start(cli_stack_t *st);
void cli_stack_supervise_stop(cli_stack_t *st);
/* The rest of a detached supervisor's life (g4 up): supervise until SIGTERM,
 * then stop the stack; keeps RUN_DIR/stack.json up to date. Returns the exit code. */
int cli_stack_supervise_loop(cli_stack_t *st, const cli_stack_opts_t *o);
/* RUN_DIR/stack.json: the model, the scheduler, the supervisor and the daemons' pids. */
void cli_stack_write_state(cli_stack_t *st, const cli_stack_opts_t *o, pid_t supervisor);

/* The persistent stack's run directory and scheduler endpoint, if one is up. */
int cli_stack_find(char *dir, size_t dir_size, char *ep, size_t ep_size);
const char *cli_run_dir(char *buf, size_t size);
/* Stops (SIGTERM, then SIGKILL after 5 s) every g4 daemon whose command line
 * names dir (its run directory) — ones a stack file does not list; returns
 * how many there were. */
int cli_stack_stop_strays(const char *dir);
/* The scheduler of the newest embedded stack of this user (a `g4 run` in
 * progress, in $TMPDIR/g4-run-*), if any. */
int cli_stack_find_embedded(char *ep, size_t ep_size);

/* pid runs the g4 program `want`, or with NULL one of the g4 daemons (a
 * recorded pid may have been reused since). */
int cli_proc_is_g4(int pid, const char *want);
/* The start time of pid (/proc/PID/stat, clock ticks since boot), 0 when it is gone. */
unsigned long long cli_proc_start(int pid);
/* pid is the process a stack file recorded: the g4 program `want` (NULL: a
 * daemon) that started at `start` (a reused pid, or a planted file naming
 * some other process, is not). */
int cli_proc_is_recorded(int pid, const char *want, unsigned long long start);
/* The run directory is this user's own: a directory, not a symlink, owned by
 * us, mode 0700 (nobody else could have planted stack.json or sockets in it).
 * 0, or -1 after printing why. */
int cli_run_dir_check(const char *dir);

#endif
