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
        document.getElementById("job-count").textContent = job.done + " of " + job.total;
        document.getElementById("job-percent").textContent =
          job.total ? Math.floor(job.done * 100 / job.total) : 100;
        document.getElementById("job-state").textContent = job.state;
        document.getElementById("job-log").textContent = job.log.join("\n");
        if (job.state !== "running") { location.reload(); return; }
      }
    } catch (e) { /* retried below */ }
    setTimeout(tick, 500);
  }
  if (el.dataset.state === "running") setTimeout(tick, 300);
}

document.addEventListener("DOMContentLoaded", () => {
  const board = document.getElementById("board");
  if (board) followBoard(board);
  const job = document.getElementById("job");
  if (job) followJob(job);
  for (const b of document.querySelectorAll(".print-button")) b.addEventListener("click", () => window.print());
  for (const f of document.querySelectorAll("form.confirm")) {
    f.addEventListener("submit", (ev) => { if (!confirm(f.dataset.confirm)) ev.preventDefault(); });
  }
});
