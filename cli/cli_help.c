/* cli_help — every subcommand's --help text, in one table.
 *
 * main.c prints a command's text for --help / -h (stdout, exit 0) before the
 * command runs, and cli_args.c matches an unknown flag against the options the
 * text names ("did you mean"), so the text is the one list of a command's
 * options: a flag missing here is a flag nobody can discover. Defaults are
 * the values the commands and g4_sampler_params_default start from. */
#include <string.h>

#include "cli_args.h"

#define SAMPLING                                                                                                     \
    "  --temp T              temperature, 0 = greedy (default 0.8)\n"                                              \
    "  --top-k K             keep the K most likely ids, 0 = all (default 40)\n"                                   \
    "  --top-p P             nucleus, 0..1 (default 0.95)\n"                                                       \
    "  --min-p P             drop ids below P x the best one's probability, 0..1 (default 0.05)\n"                 \
    "  -s, --seed S          sampler seed; -1 or 4294967295 = random (default random)\n"                           \
    "  --repeat-penalty R    (default 1.0 = off)   --repeat-last-n N (default 64)\n"                               \
    "  --presence-penalty X  (default 0.0)         --frequency-penalty X (default 0.0)\n"

#define STACK                                                                                                        \
    "  --shards N            shardd processes, layers split evenly (default: one per NUMA node, as g4 plan)\n"     \
    "  --devices LIST        a shard per device, in chain order: cuda:0,cuda:1,cpu (as g4 plan --devices;\n"    \
    "                        run --in-process: one device); alias --device, -dev\n"                              \
    "  -t, --threads N       compute threads per shard (default: the shard's cores)\n"                             \
    "  -c, --ctx N           context positions per sequence, alias --ctx-size (default: the plan's, 4096)\n"       \
    "  --slots N             sequences computed at once\n"                                                         \
    "  --template T.jinja    chat template instead of the GGUF's\n"                                                \
    "  --mmproj MMPROJ.gguf  vision / audio projector (starts encoderd)\n"                                         \
    "  --kv-type T           KV cache type: f16 (default), f32, q8_0; alias -ctk/-ctv, --kv-f32 = f32\n"          \
    "  --mmap                compute from the file's mapping (no background copy to huge pages)\n"            \
    "  --cache-mb N          prefix cache per shard, MiB (default: a quarter of the memory available)\n"        \
    "  --no-prefix-cache     compute every prompt from its start (no prefix cache)\n"                            \
    "  --draft-model FILE    speculative decoding on the last shard: a gemma4-assistant for the model\n"           \
    "                        (multi-token prediction), or a smaller Gemma 4 with the same vocabulary (also\n"       \
    "                        -md); --draft-max N (default 3), --draft-min N, --draft-p-min P\n"

#define LENGTH                                                                                                       \
    "  -n, --n-predict N     tokens to generate; default: until the end of the turn, bounded by the context\n"     \
    "                        (a note says when the context cut it); -1: the same, as in llama.cpp\n"

static const cli_help_t s_help[] = {
    {"inspect", "usage: g4 inspect [-m] FILE.gguf [--json [--json-array]] [--tensor NAME [--values N]]\n"
                "  prints the GGUF's metadata and tensor table, like gguf-dump\n"
                "  --json                one JSON object (--json-array: arrays in full)\n"
                "  --tensor NAME         one tensor's header; --values N its first N values\n"},
    {"quantize", "usage: g4 quantize IN.gguf OUT.gguf TYPE [--threads N] [--json]\n"
                 "  TYPE: Q4_K_M Q4_K_S Q5_K_M Q5_K_S Q6_K Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 F16 BF16 F32,\n"
                 "        Q4_K / Q5_K (every quantizable tensor that type, as llama-quantize --pure)\n"
                 "  the per-tensor types, bytes and metadata of llama.cpp's llama-quantize (no imatrix);\n"
                 "  inputs F32 / F16 / BF16 (quantized tensors are copied, never requantized)\n"
                 "  -t, --threads N       (default: every core)\n"
                 "  --json                a summary object on stdout\n"},
    {"run", "usage: g4 run -m MODEL.gguf (-p TEXT | -f FILE | --prompt-ids IDS) [options]\n"
            "  One chat turn (or with --raw, plain text) generated and streamed to stdout.\n"
            "  By default on the local stack of daemons (the one `g4 up` started, else one started for\n"
            "  this run and stopped after it); --in-process runs the decoder in this process.\n"
            "  -m, --model FILE      the GGUF\n"
            "  -p, --prompt TEXT     the prompt; -f, --file FILE reads it; --prompt-ids 2,818,... token ids\n"
            "  --raw                 the prompt as it is (no chat template)\n"
            "  --system TEXT         a system turn before the prompt\n" LENGTH
            "  --ignore-eos          go on past the end of the turn\n"
            "  --stop STR            stop at STR (up to 16)\n"
            "  --timeout SECONDS     give up after this long (default: never)\n"
            "  --logprobs K          top-K log-probabilities per position in --json, 0..100 (default 0)\n" SAMPLING
            "  --json                one JSON object: prompt_ids, ids, text, finish_reason, timings (ms)\n"
            "  -v, --verbose         the timing summary line even when stderr is not a terminal\n"
            "  --in-process          no daemons\n"
            "  --draft-model FILE    speculative decoding (the stack's last shard, or in this process with\n"
            "                        --in-process): a gemma4-assistant for the model (multi-token prediction),\n"
            "                        or a smaller Gemma 4 with the same vocabulary (also -md, --model-draft);\n"
            "                        greedy output is the same ids as without\n"
            "  --draft-max N         ids drafted per pass, 0..256 (default 3; 0 with a drafting stack: none)\n"
            "  --draft-min N         a pass with fewer drafted ids decodes one step instead (default 0)\n"
            "  --draft-p-min P       drafting stops below this probability (default 0)\n"
            "  --scheduler EP        a stack anywhere (tcp://HOST:PORT)\n" STACK
            "  --image FILE, --audio FILE   media for the projector (in front of the text; with --raw at\n"
            "                        <|image|> / <|audio|>); --image-min-tokens N, --image-max-tokens N\n"
            "  llama.cpp's -ngl, --n-gpu-layers, -sm, -ts, -mg are accepted and ignored: --devices says where.\n"},
    {"tokenize", "usage: g4 tokenize -m MODEL.gguf (-p TEXT | -f FILE) [--no-bos] [--no-special] [--json]\n"
                 "  prints the token ids of the text\n"
                 "  --no-bos              no BOS in front (default: the model's add_bos)\n"
                 "  --no-special          special tokens' text as plain text (default: parsed)\n"
                 "  --json                ids and pieces as JSON\n"},
    {"detokenize", "usage: g4 detokenize -m MODEL.gguf [--special] [--stream] [--json] ID...\n"
                   "  prints the text of token ids (separate or comma-separated)\n"
                   "  --special             special tokens' text too (default: left out)\n"
                   "  --stream              one id at a time, as streaming does\n"
                   "  --json                as JSON\n"},
    {"serve", "usage: g4 serve (-m MODEL.gguf | --connect EP) [options]\n"
              "  An OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions, /v1/models,\n"
              "  /health, /metrics, and a chat page at /.\n"
              "  --host HOST           address or name to listen on, IPv4 or IPv6 (default 127.0.0.1)\n"
              "  --port N              1..65535 (default 8080)\n"
              "  --api-key KEY         required as 'Authorization: Bearer KEY' (default: $G4_API_KEY, else none)\n"
              "  --connect EP          a running scheduler instead of a stack of its own\n"
              "  --max-conn-per-ip N   connections one client may hold (default 16)\n"
              "  --request-timeout S   longest a request may take to arrive, headers and body (default 30)\n" STACK},
    {"chat", "usage: g4 chat -m MODEL.gguf [--system TEXT] [--think] [options]\n"
             "  A conversation: one turn per line (\"\"\" opens and closes a multi-line turn), the reply\n"
             "  streamed; the whole history goes into every prompt, its oldest turns dropped (with a\n"
             "  note) when it outgrows the context. Ctrl-C stops a reply (the history stays), twice exits.\n"
             "  Commands: /help /reset /save FILE /load FILE /exit\n"
             "  --system TEXT         a system turn\n"
             "  --think               let the model think first (shown folded)\n" LENGTH SAMPLING STACK},
    {"bench", "usage: g4 bench -m MODEL.gguf [options]\n"
              "  prefill / decode tokens per second, time to first token, peak memory\n"
              "  -p, --n-prompt N      prompt tokens, 1..32768 (default 512)\n"
              "  -n, --n-gen N         generated tokens (default 128)\n"
              "  -t, --threads N       (default: every core)\n"
              "  --reps N              repetitions, 1..100 (default 3)   --warmup N (default 1)\n"
              "  --shards N | --in-process   --mmap   --kv-type T   --json\n"
              "  --devices LIST        cuda:0,cuda:1,cpu (a shard each; --in-process: one device)\n"
              "  --draft-model FILE    speculative decoding (see g4 run --help), with\n"
              "                        --draft-max N (default 3), --draft-min N, --draft-p-min P:\n"
              "                        decode tokens/s with the drafts' acceptance\n"},
    {"plan", "usage: g4 plan -m MODEL.gguf [--topology FILE.xml|SYNTHETIC] [--shards N] [--devices LIST] [--ctx N]\n"
             "       [--slots N] [--json]\n"
             "  where the layers would go on this machine and what memory they take; exits 1 when\n"
             "  some shards do not fit\n"
             "  --topology T          an hwloc XML file or synthetic description instead of this machine\n"
             "  --shards N            that many even stages (default: one per NUMA node)\n"
             "  --devices LIST        a stage per device in chain order (cuda:0,cuda:1,cpu): GPUs by their free\n"
             "                        memory (cuda:1=24G: a device given by its memory), the CPU the rest\n"
             "  -c, --ctx N           positions per sequence (default 4096)\n"
             "  --slots N             sequences (default: 16 x 4096 positions in sequences of --ctx)\n"
             "  --json                as JSON\n"},
    {"up", "usage: g4 up -m MODEL.gguf [options]\n"
           "  starts a persistent stack of daemons, supervised; recorded in $G4_RUN_DIR (/tmp/g4-UID)\n" STACK},
    {"status", "usage: g4 status [--json] [--scheduler EP]\n"
               "  every daemon of the stack, the scheduler included: role, name, pid, layers, state,\n"
               "  uptime, restarts, what it computes, memory, endpoint and log\n"},
    {"down", "usage: g4 down\n"
             "  stops the persistent stack: the scheduler drains, then everything exits\n"},
    {"keygen", "usage: g4 keygen [--out PREFIX] [--force]\n"
               "  a CURVE key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub; without --out on stdout\n"
               "  --force               overwrite an existing key\n"},
    {"swap", "usage: g4 swap NAME [--bin PATH] [--listen EP]\n"
             "  a new process takes over the daemon NAME (as g4 status shows it), keeping its name;\n"
             "  no request fails\n"},
    {"encode", "usage: g4 encode --mmproj MMPROJ.gguf (--image FILE | --audio FILE)... [--out EMB.bin] [options]\n"
               "  runs the vision / audio tower, writes the soft tokens (f32)\n"
               "  --image-min-tokens N, --image-max-tokens N   (default: the projector's)\n"
               "  -t, --threads N       (default: every core)\n"
               "  --json                shapes as JSON\n"},
    {"chat-template",
     "usage: g4 chat-template (-m MODEL.gguf | --template T.jinja) (-f CONVERSATION.json | -p JSON) [--openai]\n"
     "  CONVERSATION: {\"messages\": [...], \"tools\": [...], \"add_generation_prompt\": true,\n"
     "                 \"enable_thinking\": false, \"bos_token\": \"<bos>\"}\n"
     "  --openai: messages are OpenAI-style (role \"tool\" results); for templates that do not\n"
     "            fold them themselves, fold them first as tokenizerd does for the API\n"},
    {"parse-output", "usage: g4 parse-output (-f FILE | -p TEXT)\n"
                     "  splits generated text into thought, answer and tool calls (JSON)\n"},
};

const cli_help_t *cli_help_find(const char *cmd)
{
    for (size_t i = 0; i < sizeof s_help / sizeof s_help[0]; i++)
        if (!strcmp(s_help[i].cmd, cmd)) return &s_help[i];
    return NULL;
}
