"""GPU check: the CUDA build, GPU pinning, and the engine against llama-server on one GPU.

Run on a machine with an NVIDIA GPU, after building llama.cpp with CUDA from the same
llama-cpp-python sdist as ours (libllama.so for llama-cpp-python via LLAMA_CPP_LIB_PATH,
and llama-server), for example:

    cmake -S vendor/llama.cpp -B build -DGGML_CUDA=ON -DBUILD_SHARED_LIBS=ON ...
    cmake --build build --target llama llama-server
    LLAMA_CPP_LIB_PATH=build/bin python -m perf.gpu --server build/bin/llama-server

It needs only the engine (webapp.engine: llama-cpp-python, pydantic, jinja2) and requests,
not the web stack. What it measures, in one table:

  pinning      with CUDA_VISIBLE_DEVICES set to the registry's `gpu`, a child process loads
               the model with every layer offloaded; nvidia-smi must list that process with
               GPU memory. With a GPU index the host does not have, the load must not pass
               silently on the CPU.
  throughput   C conversations x 128 tokens at once: our engine (continuous batching, no
               HTTP: the ceiling of what the service adds) against llama-server -np C
               (streaming OpenAI client), aggregate tokens/s and TTFT p50/p95.
  long persona 8 new conversations on one ~1,000-token persona: first-token latency with
               the prefix cache and without it, and the copy time per token.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from webapp.engine.engine import GenerationRequest, SamplingParams
from webapp.engine.prompt import ChatMessage
from webapp.engine.registry import ModelSpec, registry_load

REPO = Path(__file__).resolve().parent.parent
MAX_TOKENS = 128
SAMPLING = SamplingParams(
    temperature=0.7, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.1, max_tokens=MAX_TOKENS, ignore_eos=True
)
SYSTEM = "You are Mina, a friendly office assistant. Answer clearly and briefly."
LONG_PERSONA = " ".join(
    f"Rule {i}: when a visitor asks about shelf {i} of the harbour archive, Mina describes its maps, "
    f"the ships they show and the year they were drawn, in two short sentences."
    for i in range(30)
)


def spec_gpu(slots: int, **changes: object) -> ModelSpec:
    spec = registry_load(REPO / "models" / "registry.toml")["office"]
    return dataclasses.replace(spec, n_gpu_layers=-1, slots=slots, max_wait_s=1e6, **changes)


def pinning(gpu: int) -> dict[str, object]:
    """Load the model in a child pinned to `gpu`; report what nvidia-smi sees of it."""
    code = (
        "import sys, time, json, os\n"
        "from perf.gpu import spec_gpu\n"
        "from webapp.engine.llama import LlamaEngine\n"
        "import llama_cpp\n"
        "e = LlamaEngine(spec_gpu(1))\n"
        "print(json.dumps({'offload': bool(llama_cpp.llama_supports_gpu_offload())}), flush=True)\n"
        "time.sleep(6)\n"
        "e.close()\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)}
    child = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    first = child.stdout.readline() if child.stdout else ""
    apps = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"], capture_output=True, text=True
    ).stdout
    _, err = child.communicate(timeout=120)
    mine = [line for line in apps.splitlines() if line.split(",")[0].strip() == str(child.pid)]
    return {
        "CUDA_VISIBLE_DEVICES": gpu,
        "loaded": bool(first.strip()),
        "reported": first.strip(),
        "nvidia-smi": mine[0].strip() if mine else "(not listed)",
        "exit": child.returncode,
        "stderr_tail": err.strip().splitlines()[-3:],
    }


def engine_run(slots: int, concurrency: int) -> dict[str, float]:
    from webapp.engine.llama import LlamaEngine

    engine = LlamaEngine(spec_gpu(slots))
    try:
        ask = [f"Question {i}: how do I plan a short team meeting?" for i in range(concurrency)]
        engine.submit(_request(SYSTEM, "warm up")).result()
        started = time.perf_counter()
        handles = [engine.submit(_request(SYSTEM, q)) for q in ask]
        done = [h.result() for h in handles]
        wall = time.perf_counter() - started
    finally:
        engine.close()
    ttfts = sorted(c.timings.ttft_ms / 1000 for c in done)
    return {
        "tokens_per_s": sum(c.usage.completion_tokens for c in done) / wall,
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))],
    }


def _request(system: str, question: str, max_tokens: int = MAX_TOKENS) -> GenerationRequest:
    return GenerationRequest(
        pinned=[ChatMessage("system", system)],
        history=(),
        user=ChatMessage("user", question),
        sampling=dataclasses.replace(SAMPLING, max_tokens=max_tokens),
    )


def server_run(binary: Path, parallel: int, concurrency: int) -> dict[str, float]:
    spec = spec_gpu(parallel)
    port = 18080 + parallel
    command = [
        str(binary), "-m", str(spec.path), "-np", str(parallel), "-c", str(spec.n_ctx * parallel),
        "-ngl", "999", "--port", str(port), "--host", "127.0.0.1", "--no-webui",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if requests.get(f"{url}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        _stream(url, SYSTEM, "warm up")
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            questions = [f"Question {i}: how do I plan a short team meeting?" for i in range(concurrency)]
            results = list(pool.map(lambda q: _stream(url, SYSTEM, q), questions))
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    ttfts = sorted(r[0] for r in results)
    return {
        "tokens_per_s": sum(r[1] for r in results) / wall,
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))],
    }


def _stream(url: str, system: str, question: str) -> tuple[float, int]:
    body = {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0.7,
        "stream": True,
        "ignore_eos": True,
    }
    started = time.perf_counter()
    first, tokens = None, 0
    with requests.post(f"{url}/v1/chat/completions", json=body, stream=True, timeout=300) as response:
        for line in response.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
            if delta:
                tokens += 1
                first = first or time.perf_counter() - started
    return first or 0.0, tokens


def long_persona(prefix_cache_mib: int) -> dict[str, float]:
    from webapp.engine.llama import LlamaEngine

    engine = LlamaEngine(spec_gpu(8, prefix_cache_mib=prefix_cache_mib))
    try:
        engine.submit(_request("warm up", "hi", 4)).result()
        handles = [engine.submit(_request(LONG_PERSONA, f"Tell me about shelf {i}.", 32)) for i in range(8)]
        firsts = [handle.result().timings.ttft_ms / 1000 for handle in handles]
        stats = engine.stats()
    finally:
        engine.close()
    restored = stats.prefix_tokens_restored
    return {
        "prompt_tokens": handles[0].plan.n_tokens,
        "ttft_p50": statistics.median(firsts),
        "ttft_max": max(firsts),
        "evaluated": stats.prompt_tokens_evaluated,
        "restore_ms_per_token": stats.prefix_restore_ms / restored if restored else 0.0,
        "save_ms": stats.prefix_save_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", type=Path, help="llama-server built with CUDA from the same sdist")
    parser.add_argument("--levels", default="8,32")
    args = parser.parse_args()
    import llama_cpp

    print("llama_supports_gpu_offload:", llama_cpp.llama_supports_gpu_offload(), flush=True)
    for gpu in (0, 1):
        print("pinning", json.dumps(pinning(gpu)), flush=True)
    rows = []
    for level in (int(x) for x in args.levels.split(",")):
        ours = engine_run(level, level)
        rows.append(("ours (engine, no HTTP)", level, ours))
        print("ours", level, ours, flush=True)
        if args.server:
            peer = server_run(args.server, level, level)
            rows.append(("llama-server", level, peer))
            print("llama-server", level, peer, flush=True)
    print("\n| server | C | tokens/s | TTFT p50 s | TTFT p95 s |\n|---|---|---|---|---|")
    for name, level, r in rows:
        print(f"| {name} | {level} | {r['tokens_per_s']:.0f} | {r['ttft_p50']:.3f} | {r['ttft_p95']:.3f} |")
    for mib in (256, 0):
        print("long persona, prefix_cache_mib", mib, json.dumps(long_persona(mib)), flush=True)


if __name__ == "__main__":
    main()
