#!/usr/bin/env node
// spec-llama.mjs — llama.cpp's speculative decoding on a target + draft pair (CPU, the oracle's
// prebuilt node-llama-cpp: its DraftSequenceTokenPredictor drafts on a sequence of the draft
// model and verifies on the target), printed as one JSON line:
//
//   node bench/spec-llama.mjs --model T.gguf [--draft D.gguf] [--threads 2] [--n-prompt 64]
//        [--n-gen 256] [--draft-max 4] [--reps 3]
//
// Per repetition: the prompt (a fixed English sentence's ids, repeated) evaluated, then n-gen greedy tokens
// generated; decode tok/s = (n_gen - 1) / the time from the first generated token to the last
// (as g4 bench counts). Without --draft: plain decoding. With it: the acceptance from the
// sequence's tokenPredictions (validated / (validated + refuted)). Medians over reps.
// The oracle's lib.mjs is found at $ORACLE (default ../shared/tools/oracle beside the repo).
import path from "node:path";
import { pathToFileURL } from "node:url";

const here = path.dirname(new URL(import.meta.url).pathname);
const oracle = process.env.ORACLE || path.resolve(here, "../../shared/tools/oracle");
const { loadLlama, parseArgs, median, round } = await import(pathToFileURL(path.join(oracle, "lib.mjs")).href);

const args = parseArgs(process.argv.slice(2), { flags: ["verbose"] });
if (!args.model) {
    console.error("usage: spec-llama.mjs --model T.gguf [--draft D.gguf] [--threads N] [--n-prompt N] [--n-gen N] [--draft-max K] [--reps N]");
    process.exit(2);
}
const { llama } = await loadLlama({ logLevel: "warn", echo: !!args.verbose });
const { DraftSequenceTokenPredictor } = await import(
    pathToFileURL(path.join(process.env.NLC_DIR || "/tmp/nlc", "node_modules/node-llama-cpp/dist/index.js")).href);
const threads = Number(args.threads ?? 2), nPrompt = Number(args["n-prompt"] ?? 64), nGen = Number(args["n-gen"] ?? 256);
const reps = Number(args.reps ?? 3), dmax = Number(args["draft-max"] ?? 4);
const ctxSize = nPrompt + nGen + 64;

const target = await llama.loadModel({ modelPath: args.model, gpuLayers: 0 });
const tctx = await target.createContext({ contextSize: ctxSize, sequences: 1, threads });
let draftModel = null, dctx = null, predictor = null;
if (args.draft) {
    draftModel = await llama.loadModel({ modelPath: args.draft, gpuLayers: 0 });
    dctx = await draftModel.createContext({ contextSize: ctxSize, sequences: 1, threads });
    // minConfidence 0: every pass drafts draft-max ids (g4's --draft-p-min 0)
    predictor = new DraftSequenceTokenPredictor(dctx.getSequence(), { minTokens: 0, maxTokens: dmax, minConfidence: 0 });
}
const seq = tctx.getSequence(predictor ? { tokenPredictor: predictor } : undefined);

// the prompt: text ids (a test model's vocabulary may be cut short), repeated to n-prompt
const text = "The history of the river valley begins with small farms along the banks, where families grew wheat and kept goats. ";
let prompt = [];
while (prompt.length < nPrompt) prompt = prompt.concat(Array.from(target.tokenize(text)));
prompt = prompt.slice(0, nPrompt);

async function oneRun() {
    await seq.clearHistory();
    const before = { ...seq.tokenPredictions };
    let n = 0, tFirst = 0, tLast = 0;
    await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, -1));
    for await (const tok of seq.evaluate(prompt.slice(-1), { temperature: 0 })) {
        tLast = performance.now();
        if (!n) tFirst = tLast;
        if (++n >= nGen) break;
    }
    const p = seq.tokenPredictions;
    const validated = p.validated - before.validated, refuted = p.refuted - before.refuted;
    return { tps: (n - 1) / ((tLast - tFirst) / 1000), validated, refuted };
}

await oneRun(); // warm-up
const runs = [];
for (let i = 0; i < reps; i++) runs.push(await oneRun());
const validated = runs.reduce((a, r) => a + r.validated, 0), refuted = runs.reduce((a, r) => a + r.refuted, 0);
console.log(JSON.stringify({
    model: path.resolve(args.model), draft: args.draft ? path.resolve(args.draft) : null, threads, n_prompt: nPrompt,
    n_gen: nGen, draft_max: args.draft ? dmax : 0, decode_tok_s: round(median(runs.map((r) => r.tps)), 2),
    all: runs.map((r) => round(r.tps, 2)), drafted: validated + refuted, accepted: validated,
    acceptance: validated + refuted ? round(validated / (validated + refuted), 3) : null,
}));
await tctx.dispose();
if (dctx) await dctx.dispose();
process.exit(0);
