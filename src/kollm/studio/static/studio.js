// kollm Studio: the two things a server-rendered page cannot do alone — stream the playground's output as it
// arrives (fetch + ReadableStream over server-sent events) and run two panes side by side.
// Text from the model or the user is only ever set with textContent, never innerHTML.
"use strict";

const csrf = () => document.body.dataset.csrf;

async function streamInto(url, form, pane, signal) {
  const { output, stats, prompt } = pane;
  output.textContent = "";
  output.classList.remove("error");
  stats.textContent = "실행 중…";
  let res;
  try {
    res = await fetch(url, { method: "POST", body: form, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin", signal });
  } catch (e) {
    if (e.name === "AbortError") { stats.textContent = "중지했습니다."; return; }
    output.classList.add("error");
    output.textContent = "Studio에 연결할 수 없습니다: " + e;
    stats.textContent = "";
    return;
  }
  if (!res.ok) {
    let msg = res.status + " " + res.statusText;
    try { msg = (await res.json()).error.message; } catch (e) { /* not JSON: keep the status line */ }
    output.classList.add("error");
    output.textContent = msg;
    stats.textContent = "";
    return;
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (e) {  // the stop button aborted the stream: the server stops generating too
      stats.textContent = "중지했습니다.";
      return;
    }
    const { value, done } = chunk;
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 2);
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") continue;
      handle(JSON.parse(data), pane);
    }
  }
}

function handle(ev, pane) {
  const { output, stats, prompt } = pane;
  if (ev.type === "prompt") {
    if (prompt) prompt.textContent = typeof ev.prompt === "string" ? ev.prompt : JSON.stringify(ev.prompt, null, 2);
    pane.promptTokens = ev.prompt_tokens;
  } else if (ev.type === "delta") {
    output.textContent += ev.text;
  } else if (ev.type === "done" || ev.type === "error") {
    output.textContent = ev.output;  // the final text (masked PII, a correction's small edits kept)
    if (ev.type === "error") {
      output.classList.add("error");
      output.textContent = ev.message;
    }
    const parts = [
      `지연 ${Math.round(ev.latency_ms)} ms`,
      `토큰 ${ev.prompt_tokens || pane.promptTokens || "?"} + ${ev.completion_tokens}`,
      `글자 ${ev.input_chars} → ${ev.output_chars}`,
    ];
    if (ev.json_valid === true) parts.push("JSON 스키마 통과");
    if (ev.json_valid === false) parts.push("JSON 스키마 실패: " + ev.json_error);
    stats.textContent = parts.join(" · ");
  }
}

function inputsInto(form, root) {
  root.querySelectorAll(".pg-input").forEach((el) => form.append("in-" + el.dataset.var, el.value));
}

document.addEventListener("DOMContentLoaded", () => {
  const run = document.getElementById("run");
  if (run) {
    const stop = document.getElementById("stop");
    let running = null;
    if (stop) stop.addEventListener("click", () => { if (running) running.abort(); });
    run.addEventListener("click", async () => {
      const form = new FormData(document.getElementById("editor"));
      inputsInto(form, document.getElementById("playground"));
      running = new AbortController();
      run.disabled = true;
      if (stop) stop.disabled = false;
      try {
        await streamInto(run.dataset.url, form, {
          output: document.getElementById("output"), stats: document.getElementById("stats"),
          prompt: document.getElementById("prompt"),
        }, running.signal);
      } finally {
        running = null;
        run.disabled = false;
        if (stop) stop.disabled = true;
        loadHistory();
      }
    });
  }
  const both = document.getElementById("run-both");
  if (both) {
    both.addEventListener("click", () => {
      document.querySelectorAll(".pane").forEach((pane) => {
        const form = new FormData();
        form.append("csrf_token", csrf());
        form.append("version", pane.querySelector(".sbs-version").value);
        form.append("model", pane.querySelector(".sbs-model").value);
        inputsInto(form, document.getElementById("sbs-inputs"));
        streamInto(both.dataset.url, form, { output: pane.querySelector(".output"), stats: pane.querySelector(".stats") });
      });
    });
  }
  // a test run takes a while: say so, and stop a second click from starting it twice
  document.querySelectorAll(".run-form").forEach((f) => f.addEventListener("submit", () => {
    const b = f.querySelector("button");
    b.disabled = true;
    b.textContent = "실행 중…";
  }));
});

// --- background jobs (#25): the job page polls its JSON status for progress n/N, rate and ETA -------------------
function seconds(s) {
  s = Math.max(0, Math.round(s));
  return s >= 60 ? `${Math.floor(s / 60)}분 ${s % 60}초` : `${s}초`;
}

function showJob(v) {
  const unit = v.kind === "test_run" ? "항목" : "단계";
  document.getElementById("job-status").textContent = v.status + (v.cancel_requested && v.status === "running" ? " (취소 중)" : "");
  document.getElementById("job-status").className = "status " + v.status;
  const bar = document.getElementById("job-progress");
  bar.max = v.total || 1;
  bar.value = v.done;
  const parts = [`${v.done}/${v.total} ${unit}`];
  if (v.rate_per_s) parts.push(v.rate_per_s >= 1 ? `${v.rate_per_s.toFixed(1)} ${unit}/초` : `${(1 / v.rate_per_s).toFixed(1)}초/${unit}`);
  if (v.eta_s !== null && v.eta_s !== undefined) parts.push(`남은 시간 약 ${seconds(v.eta_s)}`);
  if (v.elapsed_s) parts.push(`경과 ${seconds(v.elapsed_s)}`);
  document.getElementById("job-counts").textContent = parts.join(" · ");
  document.getElementById("job-error").textContent = v.error || "";
  document.getElementById("job-note").textContent = v.note || "";
  const cancel = document.getElementById("cancel-form");
  if (cancel && !["queued", "running"].includes(v.status)) cancel.remove();
}

async function pollJob(box) {
  let v;
  try {
    const r = await fetch(`/jobs/${box.dataset.job}/status`, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!r.ok) throw new Error(r.status);
    v = await r.json();
  } catch (e) {
    setTimeout(() => pollJob(box), 5000);  // the Studio restarting: try again
    return;
  }
  showJob(v);
  if (["queued", "running"].includes(v.status)) {
    setTimeout(() => pollJob(box), 1000);
  } else if (v.status === "done" && v.kind === "test_run" && v.result.url) {
    window.location.assign(v.result.url);  // a finished run: its results are what the user waited for
  } else if (v.status !== box.dataset.status) {
    window.location.reload();  // finished while we watched: the server renders the result and its links
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("job");
  if (box && ["queued", "running"].includes(box.dataset.status)) pollJob(box);
});

// --- the basics (#25): playground history, copy buttons, model-server status, clickable log rows, confirmations
async function loadHistory() {
  const box = document.getElementById("history");
  const list = document.getElementById("history-list");
  if (!box || !list) return;
  let data;
  try {
    data = (await (await fetch(box.dataset.url, { credentials: "same-origin" })).json()).data || [];
  } catch (e) { return; }
  list.textContent = "";
  data.forEach((run) => {
    const li = document.createElement("li");
    const first = Object.values(run.inputs)[0] || "";
    li.textContent = `v${run.version} · ${first.slice(0, 40)} → ${(run.error || run.output).slice(0, 60)}`;
    li.addEventListener("click", () => {
      document.querySelectorAll("#playground .pg-input").forEach((el) => { el.value = run.inputs[el.dataset.var] || ""; });
      const out = document.getElementById("output");
      out.textContent = run.error || run.output;
      out.classList.toggle("error", !!run.error);
      document.getElementById("stats").textContent = `기록에서 불러옴 · 지연 ${Math.round(run.latency_ms)} ms`;
    });
    list.appendChild(li);
  });
}

async function modelStatus(el) {
  try {
    const st = await (await fetch(el.dataset.url, { credentials: "same-origin" })).json();
    if (st.reachable) {
      el.className = "status-ok";
      el.textContent = `연결됨 · ${st.latency_ms} ms · 모델: ${(st.models || []).join(", ") || "(없음)"}`;
    } else {
      el.className = "status-bad";
      el.textContent = "연결 안 됨: " + st.error;
    }
  } catch (e) {
    el.className = "status-bad";
    el.textContent = "확인 실패: " + e;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  loadHistory();
  const status = document.getElementById("model-status");
  if (status) modelStatus(status);
  document.querySelectorAll("button.copy").forEach((b) => b.addEventListener("click", async () => {
    const text = document.getElementById(b.dataset.copy).textContent;
    try {
      await navigator.clipboard.writeText(text);
      b.textContent = "복사됨";
    } catch (e) {  // no clipboard (http on another host): select the text for Ctrl-C
      const range = document.createRange();
      range.selectNodeContents(document.getElementById(b.dataset.copy));
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      b.textContent = "선택됨: Ctrl-C";
    }
  }));
  document.querySelectorAll("tr.link-row").forEach((tr) => tr.addEventListener("click", (e) => {
    if (e.target.closest("a, button, form, input")) return;
    window.location.href = tr.dataset.href;
  }));
  document.querySelectorAll("form.confirm").forEach((f) => f.addEventListener("submit", (e) => {
    if (!window.confirm(f.dataset.confirm)) e.preventDefault();
  }));
});
