// kollm Studio: file variables (#26). The editor chooses each variable's kind (글 / 이미지 / 음성); the playground
// shows a file picker beside a file variable's text box, posts the chosen file to /apps/<app>/extract (OCR here,
// transcription by the model server) and puts the text it answers in the box: editable, marked as extracted.
// Text from files or the server is only ever set with textContent or .value, never innerHTML.
"use strict";

(() => {
  const ACCEPT = { image: "image/*", audio: "audio/*,video/webm,video/mp4" };
  const WORKING = { image: "이미지에서 글자를 읽는 중…", audio: "받아쓰는 중… (녹음 길이에 따라 걸립니다)" };
  const token = () => document.body.dataset.csrf;
  const byVar = (sel, v) => Array.from(document.querySelectorAll(sel)).find((el) => el.dataset.var === v);

  function kindOf(v) {
    const sel = byVar("select.file-kind", v);
    return sel ? sel.value : "text";
  }

  function showKind(v) {
    const wrap = byVar(".pg-file", v);
    if (!wrap) return;
    const kind = kindOf(v);
    wrap.hidden = kind === "text";
    if (kind !== "text") wrap.querySelector("input[type=file]").accept = ACCEPT[kind];
  }

  function thumbnail(wrap, file) {
    let img = wrap.querySelector("img.pg-thumb");
    if (!file.type.startsWith("image/")) { if (img) img.remove(); return; }
    if (!img) {
      img = document.createElement("img");
      img.className = "pg-thumb";
      img.alt = "";
      wrap.appendChild(img);
    }
    const reader = new FileReader();  // a data: URL (the page's CSP allows data: images, not blob:)
    reader.onload = () => { img.src = reader.result; };
    reader.readAsDataURL(file);
  }

  async function upload(input) {
    const file = input.files[0];
    if (!file) return;
    const v = input.dataset.var;
    const wrap = byVar(".pg-file", v);
    const note = wrap.querySelector(".pg-extracted");
    const box = byVar("#playground .pg-input", v);
    const kind = kindOf(v);
    const form = new FormData();
    form.append("csrf_token", token());
    form.append("var", v);
    form.append("kind", kind);
    form.append("file", file);
    note.className = "pg-extracted busy";
    note.textContent = WORKING[kind] || "";
    input.disabled = true;
    try {
      const res = await fetch(wrap.dataset.url, {
        method: "POST", body: form, credentials: "same-origin",
        headers: { "X-CSRF-Token": token(), Accept: "application/json" },
      });
      let body = null;
      try { body = await res.json(); } catch (e) { /* not JSON: the status line below */ }
      if (!res.ok) {
        note.className = "pg-extracted error";
        note.textContent = (body && body.error && body.error.message) || `${res.status} ${res.statusText}`;
        return;
      }
      box.value = body.text;
      box.rows = Math.min(12, Math.max(2, body.text.split("\n").length));  // the whole receipt or transcript in view
      box.dataset.extracted = body.text;
      box.classList.add("extracted");
      note.className = "pg-extracted done";
      note.dataset.note = `${file.name}: ${body.note} · 고쳐 쓸 수 있습니다`;
      note.textContent = note.dataset.note;
      thumbnail(wrap, file);
    } catch (e) {
      note.className = "pg-extracted error";
      note.textContent = "Studio에 연결할 수 없습니다: " + e;
    } finally {
      input.disabled = false;
      input.value = "";  // the same file may be chosen again
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("select.file-kind").forEach((sel) => {
      showKind(sel.dataset.var);
      sel.addEventListener("change", () => showKind(sel.dataset.var));
    });
    document.querySelectorAll("input.pg-file-input").forEach((input) => {
      input.addEventListener("change", () => upload(input));
    });
    // an extracted text the user then edits stays marked, as edited
    document.querySelectorAll("#playground .pg-input").forEach((box) => box.addEventListener("input", () => {
      if (box.dataset.extracted === undefined) return;
      const note = byVar(".pg-extracted", box.dataset.var);
      const edited = box.value !== box.dataset.extracted;
      box.classList.toggle("edited", edited);
      if (note && note.dataset.note) note.textContent = note.dataset.note + (edited ? " (고쳐 씀)" : "");
    }));
  });
})();
