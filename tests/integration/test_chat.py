#!/usr/bin/env python3
"""g4 chat-template against the reference renderings in testdata/chat/cases.json
(every case, under the template revision it names), plus the GGUF's own template
through -m, and g4 parse-output on model-style outputs.
Usage: test_chat.py G4_BINARY TESTDATA_DIR"""
import json, os, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from g4test import check, finish, start  # noqa: E402

g4, td = start("chat/cases.json")
cases_path = os.path.join(td, "chat", "cases.json")

cases = json.load(open(cases_path))
tdir = os.path.join(td, "templates")
with tempfile.TemporaryDirectory() as tmp:
    for c in cases:
        conv = os.path.join(tmp, "conv.json")
        json.dump(c["inputs"], open(conv, "w"), ensure_ascii=False)
        r = subprocess.run([g4, "chat-template", "--template", os.path.join(tdir, c["template"]), "-f", conv],
                           capture_output=True)
        want = c["expected"]
        if isinstance(want, dict):
            check(r.returncode != 0, "%s: expected an error, got %r" % (c["name"], r.stdout[:200]))
            continue
        got = r.stdout.decode("utf-8", "replace")
        if r.returncode != 0 or got != want:
            i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            check(False, "%s: differs at char %d: got %r want %r %s" % (c["name"], i, got[max(0, i - 30):i + 40],
                  want[max(0, i - 30):i + 40], r.stderr.decode().strip()))
        else:
            check(True, "")
    # the GGUF's embedded template, through -m
    vocab = os.path.join(td, "vocab", "ggml-vocab-gemma-4.gguf")
    for c in cases:
        if c["template"] != "gguf-embedded.jinja" or isinstance(c["expected"], dict):
            continue
        conv = os.path.join(tmp, "conv.json")
        json.dump(c["inputs"], open(conv, "w"), ensure_ascii=False)
        r = subprocess.run([g4, "chat-template", "-m", vocab, "-f", conv], capture_output=True)
        check(r.returncode == 0 and r.stdout.decode() == c["expected"], "%s via -m: differs" % c["name"])

# OpenAI-style tool results (role "tool"): folded for the older templates as llama.cpp does,
# so the .it inputs render to what the .interleaved / .gguf cases (rewritten by hand) expect
by = {c["name"]: c for c in cases}
with tempfile.TemporaryDirectory() as tmp:
    for scen in ("tools_roundtrip", "tools_pending_response", "tool_call_awaiting_response"):
        src = by.get(scen + ".it")
        if not src:
            continue
        for tag, tfile in (("it", "google-gemma-4-31B-it.jinja"), ("interleaved", "google-gemma-4-31B-it-interleaved.jinja"),
                           ("gguf", "gguf-embedded.jinja")):
            want = by.get(scen + "." + tag)
            if not want or isinstance(want["expected"], dict):
                continue
            inputs = dict(src["inputs"], **{k: v for k, v in want["inputs"].items() if k != "messages"})
            conv = os.path.join(tmp, "c.json")
            json.dump(inputs, open(conv, "w"))
            r = subprocess.run([g4, "chat-template", "--openai", "--template", os.path.join(tdir, tfile), "-f", conv],
                               capture_output=True)
            check(r.returncode == 0 and r.stdout.decode() == want["expected"],
                  "%s OpenAI form under %s: %r vs %r" % (scen, tag, r.stdout.decode()[-200:], want["expected"][-200:]))

# output parsing
def parse(text):
    r = subprocess.run([g4, "parse-output", "-p", text], capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr}

got = parse("<|channel>thought\nLet me think.<channel|>The answer is 4.<turn|>")
check(got == {"content": "The answer is 4.", "reasoning_content": "Let me think."}, "parse thought: %r" % got)
got = parse('<|tool_call>call:get_weather{city:<|"|>Paris<|"|>,days:3,opts:{metric:true,hours:[1,2.5]}}<tool_call|>'
            '<|tool_call>call:now{}<tool_call|>')
check(got.get("tool_calls") == [
    {"type": "function", "function": {"name": "get_weather",
                                      "arguments": {"city": "Paris", "days": 3, "opts": {"metric": True, "hours": [1, 2.5]}}}},
    {"type": "function", "function": {"name": "now", "arguments": {}}}] and got["content"] == "", "parse calls: %r" % got)
got = parse('Sure.<|tool_call>call:f{s:<|"|>a, {b}: c<|"|>}<tool_call|>')
check(got.get("content") == "Sure." and got["tool_calls"][0]["function"]["arguments"] == {"s": "a, {b}: c"},
      "parse quoted delimiters: %r" % got)
got = parse('<|tool_call>call:f{s:<|"|>unterminated}<tool_call|>')
check("error" in got, "malformed call must be an error: %r" % got)
finish()
