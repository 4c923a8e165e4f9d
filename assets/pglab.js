// pglab: the few things pages do without a reload. No framework, no CDN.
"use strict";

// Live board: fetch the server-rendered grid; 304 while nothing changed.
function followBoard(el) {
  let version = el.dataset.version;
  const url = el.dataset.grid;
  const status = document.getElementById("board-live");
  async function tick() {
    try {
      const r = await fetch(url, { headers: { "If-None-Match": version }, credentials: "same-origin" });
      if (r.status === 200) {
        el.innerHTML = await r.text();
        version = r.headers.get("ETag") || version;
        el.dataset.version = version;
      }
      if (status) status.textContent = r.ok || r.status === 304
        ? "Updates by itself every few seconds."
        : "Cannot reach pglab (" + r.status + "); retrying.";
    } catch (e) {
      if (status) status.textContent = "Cannot reach pglab; retrying.";
    }
    setTimeout(tick, 2000);
  }
  setTimeout(tick, 2000);
}

// A background job (apply): progress bar and log until it ends.
function followJob(el) {
  const url = el.dataset.status;
  async function tick() {
    try {
      const r = await fetch(url, { credentials: "same-origin" });
      if (r.ok) {
        const job = await r.json();
        const bar = document.getElementById("job-progress");
        bar.max = Math.max(job.total, 1);
        bar.value = job.done;
        document.getElementById("job-count").textContent = job.total
          ? job.done + " of " + job.total + " changes (" + Math.floor(job.done * 100 / job.total) + "%)"
          : (job.state === "queued" ? "waiting for a worker" : (job.kind === "apply" ? "planning the changes" : "running"));
        document.getElementById("job-state").textContent = job.state;
        document.getElementById("job-log").textContent = job.log.join("\n");
        if (job.state !== "running" && job.state !== "queued") { location.reload(); return; }
      }
    } catch (e) { /* retried below */ }
    setTimeout(tick, 500);
  }
  if (el.dataset.state !== "ended") setTimeout(tick, 300);
}

// Dump upload: drag and drop, a progress bar, then the submission's page.
function enhanceUpload(form) {
  const input = form.querySelector("input[type=file]");
  const zone = form.querySelector(".dropzone");
  const bar = form.querySelector(".upload-progress");
  if (zone) {
    zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (ev) => {
      ev.preventDefault();
      zone.classList.remove("over");
      if (ev.dataTransfer.files.length) input.files = ev.dataTransfer.files;
    });
  }
  form.addEventListener("submit", (ev) => {
    if (!input.files.length) return;
    ev.preventDefault();
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    bar.hidden = false;
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = Math.floor(e.loaded * 100 / e.total); };
    xhr.onload = () => {
      if (xhr.responseURL && xhr.responseURL.includes("/submissions/")) { location.href = xhr.responseURL; return; }
      document.open(); document.write(xhr.responseText); document.close();
    };
    xhr.onerror = () => { bar.hidden = true; alert("The upload was interrupted; nothing was stored. Try again."); };
    xhr.send(new FormData(form));
  });
}

// A submission's page follows its job until it ends.
function followSubmission(el) {
  async function tick() {
    try {
      const r = await fetch(el.dataset.status, { credentials: "same-origin" });
      if (r.ok) {
        const s = await r.json();
        if (s.status !== el.dataset.state) { location.reload(); return; }
      }
    } catch (e) { /* retried below */ }
    setTimeout(tick, 1000);
  }
  if (el.dataset.state === "queued" || el.dataset.state === "running") setTimeout(tick, 1000);
}

// A student's progress follows the scoring rounds (ETag polling, like the
// board) and says aloud which task just passed.
function followProgress(el) {
  const lab = el.id.replace(/^progress-/, "");
  const announce = document.getElementById("announce-" + lab);
  let version = el.dataset.version;
  async function tick() {
    try {
      const r = await fetch(el.dataset.url, {
        credentials: "same-origin",
        headers: version ? { "If-None-Match": version } : {},
      });
      if (r.status === 200) {
        const before = new Set([...el.querySelectorAll("li.task[data-passed='1']")].map((t) => t.id));
        el.innerHTML = await r.text();
        version = r.headers.get("ETag") || version;
        const passed = [...el.querySelectorAll("li.task[data-passed='1']")].filter((t) => !before.has(t.id));
        if (passed.length && announce) {
          announce.textContent = "Passed: " + passed.map((t) => t.dataset.title).join(", ");
          for (const t of passed) t.classList.add("just-passed");
        }
      }
    } catch (e) { /* retried below */ }
    setTimeout(tick, 2000);
  }
  setTimeout(tick, 2000);
}

// "Copy" next to a command.
function enhanceCopy(button) {
  button.addEventListener("click", async () => {
    const text = document.getElementById(button.dataset.copy).textContent;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents(document.getElementById(button.dataset.copy));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2500);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const p of document.querySelectorAll(".live-progress")) followProgress(p);
  for (const b of document.querySelectorAll("button.copy")) enhanceCopy(b);
  for (const f of document.querySelectorAll("form.upload")) enhanceUpload(f);
  const sub = document.getElementById("sub-status");
  if (sub) followSubmission(sub);
  const board = document.getElementById("board");
  if (board) followBoard(board);
  const job = document.getElementById("job");
  if (job) followJob(job);
  for (const b of document.querySelectorAll(".print-button")) b.addEventListener("click", () => window.print());
  for (const f of document.querySelectorAll("form.confirm")) {
    f.addEventListener("submit", (ev) => { if (!confirm(f.dataset.confirm)) ev.preventDefault(); });
  }
});

// A list that follows running jobs (the exports of a lab): every 2 s the
// page is fetched again and only the list replaced, so that a form being
// filled in beside it stays as it is; it stops once nothing runs.
(function () {
  const list = document.getElementById("exports-list");
  if (!list || !list.dataset.follow) return;
  const url = list.dataset.follow;
  async function tick() {
    try {
      const r = await fetch(url, { credentials: "same-origin" });
      if (r.ok) {
        const doc = new DOMParser().parseFromString(await r.text(), "text/html");
        const fresh = doc.getElementById("exports-list");
        if (fresh) {
          list.innerHTML = fresh.innerHTML;
          if (!fresh.dataset.follow) return;
        }
      }
    } catch (e) { /* tried again below */ }
    setTimeout(tick, 2000);
  }
  setTimeout(tick, 2000);
})();
