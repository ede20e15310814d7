// kollm Studio: the two things a server-rendered page cannot do alone — stream the playground's output as it
// arrives (fetch + ReadableStream over server-sent events) and run two panes side by side.
// Text from the model or the user is only ever set with textContent, never innerHTML.
"use strict";

const csrf = () => document.body.dataset.csrf;

async function streamInto(url, form, pane) {
  const { output, stats, prompt } = pane;
  output.textContent = "";
  output.classList.remove("error");
  stats.textContent = "실행 중…";
  let res;
  try {
    res = await fetch(url, { method: "POST", body: form, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" });
  } catch (e) {
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
    const { value, done } = await reader.read();
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
    output.textContent = ev.output;  // the final text (masked, when the app masks PII)
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
    run.addEventListener("click", () => {
      const form = new FormData(document.getElementById("editor"));
      inputsInto(form, document.getElementById("playground"));
      streamInto(run.dataset.url, form, {
        output: document.getElementById("output"), stats: document.getElementById("stats"),
        prompt: document.getElementById("prompt"),
      });
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
