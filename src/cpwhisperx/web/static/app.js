"use strict";
// The page: new jobs, their progress live, the video with every subtitle track, and the
// subtitle editor. Everything goes through the same HTTP API as other programs use.

const $ = (id) => document.getElementById(id);
// Opened as /?token=...: the server answered with the token in a cookie, which every request
// of this page carries from now on (media, tracks and event streams too); out of the address.
if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", "/");

let current = null;      // the id of the job shown
let shown = {};          // what the server last said of it
let events = null;       // its event stream
let tracks = {};         // language → {style, events, failures}
let checkTimer = null;

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = response.headers.get("content-type")?.includes("json")
    ? await response.json() : await response.text();
  if (!response.ok) {
    const message = body?.error?.message || response.statusText;
    say(message);
    throw new Error(message);
  }
  return body;
}

function say(message) { $("message").textContent = message || ""; }

// A list redrawn only when what it shows changed, the focus kept on the element of the same
// key: a keyboard or screen-reader user does not lose their place to a refresh.
function redraw(container, items) {
  const key = JSON.stringify(items.map((node) => node.outerHTML));
  if (container.dataset.drawn === key) return;
  const focused = container.contains(document.activeElement)
    ? document.activeElement.closest("[data-key]")?.dataset.key : null;
  container.replaceChildren(...items);
  container.dataset.drawn = key;
  if (focused != null) container.querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

// Jobs.

async function loadJobs() {
  const jobs = await api("/api/jobs");
  redraw($("job-list"), jobs.map((job) => el("li", {},
    el("button", { type: "button", onclick: () => openJob(job.id), "data-key": job.id },
      `${job.media}: ${job.workflow}, ${job.state}` +
      (job.stage && job.state === "running" ? ` (${job.stage})` : "")))));
}

$("new-job").addEventListener("submit", async (event) => {
  event.preventDefault();
  say("");
  const form = new FormData($("new-job"));
  const button = event.submitter || $("new-job").querySelector("button");
  button.disabled = true;
  try {
    const job = await api("/api/jobs", { method: "POST", body: form });
    await loadJobs();
    openJob(job.id);
  } finally {
    button.disabled = false;
  }
});

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  $("file").files = e.dataTransfer.files;
});

async function openJob(id) {
  if (events) events.close();
  if (id !== current) stopVideo();
  current = id;
  tracks = {};
  $("job").hidden = false;
  $("player").hidden = $("editor").hidden = true;
  show(await api(`/api/jobs/${id}`));
  follow(id);
}

function follow(id) {
  if (events) events.close();
  events = new EventSource(`/api/jobs/${id}/events`);
  events.addEventListener("job", (message) => {
    const job = JSON.parse(message.data);
    if (job.id !== current) return;
    show(job);
    if (["done", "failed", "cancelled"].includes(job.state)) {
      events.close();
      loadJobs();
      if (job.state === "done") loadSubtitles(job);
    }
  });
}

function show(job) {
  shown = job;
  $("job-title").textContent = `${job.media} (${job.id})`;
  $("job-state").textContent = job.state + (job.error ? `: ${job.error}` : "");
  $("job-state").className = job.state;
  const stages = Object.entries(job.manifest.stages);
  redraw($("stages"), stages.map(([name, stage]) => {
    const live = job.state === "running" && job.stage === name && stage.status === "running";
    const value = stage.status === "done" ? 1 : live ? job.fraction : 0;
    return el("li", { class: stage.status, "data-stage": name },
      `${name}: ${stage.status}` + (stage.seconds != null ? ` (${stage.seconds.toFixed(1)} s)` : ""),
      el("progress", { max: "1", value: String(value), "aria-label": `${name} progress` }));
  }));
  redraw($("outputs"), job.outputs.map((name) => el("li", {},
    el("a", { href: `/api/jobs/${job.id}/outputs/${encodeURIComponent(name)}`, download: name,
              "data-key": name }, name))));
}

$("cancel").addEventListener("click", async () => { show(await api(`/api/jobs/${current}/cancel`, { method: "POST" })); });
$("delete").addEventListener("click", async () => {
  if (!confirm(`Delete ${shown.media} and everything made from it?`)) return;
  await api(`/api/jobs/${current}`, { method: "DELETE" });
  if (events) events.close();
  stopVideo();
  $("job").hidden = true;
  current = null;
  loadJobs();
});

function stopVideo() {
  const video = $("video");
  video.pause();
  video.removeAttribute("src");
  delete video.dataset.job;
  video.load();
}

// The player and the editor.

async function loadSubtitles(job) {
  const found = await api(`/api/jobs/${job.id}/subtitles`);
  tracks = found.tracks;
  const video = $("video");
  const stamp = Date.now();  // after a save: the new files, not the cached ones
  video.replaceChildren(...found.languages.map((language, n) => {
    const vtt = job.outputs.find((o) => o.endsWith(`.${language}.vtt`)) || "";
    const track = el("track", { kind: "subtitles", srclang: language, label: language,
      src: `/api/jobs/${job.id}/outputs/${encodeURIComponent(vtt)}?v=${stamp}` });
    track.default = n === 0;
    return track;
  }));
  if (video.dataset.job !== job.id) {
    video.dataset.job = job.id;
    video.src = `/api/jobs/${job.id}/media`;
  }
  $("player").hidden = !found.languages.length;
  const select = $("edit-language");
  const chosen = select.value;
  select.replaceChildren(...found.languages.map((l) => el("option", { value: l }, l)));
  const target = found.languages.includes(chosen) ? chosen
    : found.languages.find((l) => l !== job.source_language) || found.languages[0];
  if (target) select.value = target;
  $("editor").hidden = !found.languages.length;
  renderEditor();
}

$("edit-language").addEventListener("change", renderEditor);

function overlapping(list, start, end) {
  let best = "", most = 0;
  for (const e of list) {
    const shared = Math.min(end, e.end) - Math.max(start, e.start);
    if (shared > most) { most = shared; best = e.text; }
  }
  return best;
}

function renderEditor() {
  const language = $("edit-language").value;
  const track = tracks[language];
  if (!track) return;
  // Beside it: the spoken language's track, or another one.
  const source = [shown.source_language, ...Object.keys(tracks)].find(
    (l) => l !== language && tracks[l]);
  $("source-head").textContent = source ? `Source (${source})` : "Source";
  $("edit-head").textContent = `Text (${language})`;
  $("events").replaceChildren(...track.events.map((event, i) => {
    const n = i + 1;
    // No min: the step counts from the value itself, so an arrow key nudges it by 0.05 s.
    const time = (which) => el("input", {
      type: "number", step: "0.05", value: event[which].toFixed(3), "data-field": which,
      "aria-label": `event ${n} ${which} in seconds`,
      oninput: (e) => { event[which] = Number(e.target.value); scheduleCheck(); } });
    const start = time("start"), end = time("end");
    const shift = (by) => el("button", {
      type: "button", "aria-label": `move event ${n} ${by < 0 ? "earlier" : "later"} by 0.1 s`,
      onclick: () => {
        event.start = Math.max(0, +(event.start + by).toFixed(3));
        event.end = +(event.end + by).toFixed(3);
        start.value = event.start.toFixed(3);
        end.value = event.end.toFixed(3);
        scheduleCheck();
      } }, by < 0 ? "◀ 0.1" : "0.1 ▶");
    return el("tr", { "data-event": String(n) },
      el("td", {}, el("button", { type: "button", "aria-label": `play event ${n}`,
        onclick: () => { const v = $("video"); v.currentTime = event.start; v.play(); } },
        String(n))),
      el("td", { class: "time" }, start, " – ", end, " ", shift(-0.1), shift(0.1)),
      el("td", { class: "source" }, source ? overlapping(tracks[source].events, event.start,
                                                         event.end) : ""),
      el("td", {}, el("textarea", { rows: "2", "aria-label": `event ${n} text`,
        "aria-describedby": `warn-${n}`,
        oninput: (e) => { event.text = e.target.value; scheduleCheck(); } }, event.text),
        el("p", { class: "warn", id: `warn-${n}` })));
  }));
  showFailures(track);
}

function showFailures(track) {
  const failures = track.failures || [];
  document.querySelectorAll(".warn").forEach((p) => { p.textContent = ""; });
  for (const failure of failures) {
    const p = $(`warn-${failure.event}`);
    if (p) p.textContent = Object.values(failure.why).join("; ");
  }
  $("rules").textContent = `${Math.round((track.all_rules ?? 1) * 100)}% of events meet every rule`;
}

function scheduleCheck() {
  clearTimeout(checkTimer);
  checkTimer = setTimeout(async () => {
    const language = $("edit-language").value;
    const track = tracks[language];
    const verdict = await api(`/api/jobs/${current}/subtitles/${language}/check`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ events: track.events }) });
    Object.assign(track, verdict);
    showFailures(track);
  }, 250);
}

$("save").addEventListener("click", async () => {
  const language = $("edit-language").value;
  say("");
  await api(`/api/jobs/${current}/subtitles/${language}`, {
    method: "PUT", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ events: tracks[language].events }) });
  $("job-state").textContent = "queued";
  follow(current);
});

loadJobs().catch(() => {});
setInterval(() => { if (!document.hidden) loadJobs().catch(() => {}); }, 3000);
