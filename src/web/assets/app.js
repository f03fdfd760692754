// mbtd's page: plain JavaScript, no libraries (boards are offline). One file for the three
// pages; `data-page` on <body> picks what runs. Data: /api/status once, then one
// Server-Sent Event per scored window from /api/scores.
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "–");

// A change (threshold, switch, mark): POST JSON; the error text comes back as an exception.
async function postJson(url, body) {
  const r = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error((await r.text()).trim());
  return r.json();
}

async function getJson(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  if (!r.ok) throw new Error(url + ": " + r.status + " " + (await r.text()));
  return r.json();
}

// The live stream; reconnects by itself (EventSource does), with a visible state.
function live(onWindow) {
  const es = new EventSource("/api/scores");
  es.addEventListener("window", (m) => onWindow(JSON.parse(m.data)));
  es.onerror = () => document.body.classList.add("offline");
  es.onopen = () => document.body.classList.remove("offline");
  return es;
}

let status = null;

function header(s) {
  $("model").textContent = "model " + s.model_version + " · mbtd " + s.version;
}

function setState(el, state) {
  el.textContent = state;
  el.className = "state " + state.split(" ")[0];
}

// ------------------------------------------------------------------------------ live page
function livePage() {
  const rows = {};
  const tbody = document.querySelector("#scores tbody");
  status.labels.forEach((label, k) => {
    const tr = document.createElement("tr");
    tr.id = "row-" + label;
    const t = status.thresholds[k];
    const tune = label === "none"
      ? `<td class="muted">never fires</td>`
      : `<td class="tune"><input type="checkbox" class="on" title="listen for ${esc(label)}"${status.fires[k] ? " checked" : ""}>` +
        `<input type="number" class="thr" min="0.01" max="1" step="0.01" value="${fmt(t)}" title="threshold"></td>`;
    tr.innerHTML =
      `<td>${esc(label)}</td><td class="bar"><div class="track"><div class="fill"></div>` +
      `<div class="mark" style="left:${(t * 100).toFixed(1)}%"></div></div>` +
      `<span class="fused">–</span></td><td class="audio">–</td><td class="video">–</td>${tune}`;
    tbody.appendChild(tr);
    rows[label] = tr;
    if (label === "none") return;
    // Run-time tuning: saved by mbtd in its tuning file (not the TOML), in force at once.
    const apply = async (body) => {
      try {
        const st = await postJson("/api/labels/" + encodeURIComponent(label), body);
        status.thresholds[k] = st.threshold;
        status.fires[k] = st.enabled;
        tr.querySelector(".thr").value = fmt(st.threshold);
        tr.querySelector(".on").checked = st.enabled;
        tr.querySelector(".mark").style.left = (st.threshold * 100).toFixed(1) + "%";
        $("tune-msg").textContent = label + ": threshold " + fmt(st.threshold) + (st.enabled ? ", on" : ", off") + " (saved)";
      } catch (err) {
        $("tune-msg").textContent = err.message;
      }
    };
    tr.querySelector(".thr").onchange = (ev) => apply({ threshold: Number(ev.target.value) });
    tr.querySelector(".on").onchange = (ev) => apply({ enabled: ev.target.checked });
  });
  $("backend").textContent = status.backend;
  setState($("audio-state"), status.audio_state);
  setState($("video-state"), status.video_state);
  $("mode").textContent = status.mode;
  // Writes the disk refuses (full, read-only): evidence, a spool, shown until they succeed.
  const storage = (errors) => {
    $("storage").hidden = !errors.length;
    $("storage").textContent = errors.length ? "Storage: " + errors.join("; ") : "";
  };
  storage(status.storage_errors || []);

  const mel = $("mel");
  const ctx = mel.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, mel.width, mel.height);
  const recent = [];

  live((m) => {
    const w = m.window;
    // Another model took over (a reload): its labels may differ; start the page over.
    if (m.model_version !== status.model_version || w.fused.length !== status.labels.length)
      return location.reload();
    $("window").textContent = w.index + " (" + fmt(w.start_s, 1) + "–" + fmt(w.end_s, 1) + " s)";
    status.labels.forEach((label, k) => {
      const tr = rows[label];
      const p = w.fused[k];
      tr.querySelector(".fill").style.width = (p * 100).toFixed(1) + "%";
      tr.querySelector(".fused").textContent = fmt(p, 3);
      tr.querySelector(".audio").textContent = w.audio ? fmt(w.audio[k], 3) : "–";
      tr.querySelector(".video").textContent = w.video ? fmt(w.video[k], 3) : "–";
      tr.className = p >= m.thresholds[k] ? "hit" : p >= status.watch[k] ? "near" : "";
    });
    setState($("audio-state"), m.audio_state);
    setState($("video-state"), m.video_state);
    $("mode").textContent = m.mode;
    storage(m.storage_errors || []);
    $("rate").textContent = fmt(m.throughput.windows_per_s, 2);
    $("p50").textContent = m.throughput.latency_p50_ms === null ? "–" : fmt(m.throughput.latency_p50_ms, 0) + " ms";
    $("p99").textContent = m.throughput.latency_p99_ms === null ? "–" : fmt(m.throughput.latency_p99_ms, 0) + " ms";
    $("level").textContent = fmt(m.level_dbfs, 1);
    const lvl = m.level_dbfs === null ? 0 : Math.max(0, Math.min(1, (m.level_dbfs + 80) / 80));
    $("level-bar").style.width = (lvl * 100).toFixed(1) + "%";
    if (m.window.modalities.video) $("frame").src = "/api/latest.jpg?w=" + w.index;
    if (m.mel) drawMel(ctx, mel, m.mel);
    if (m.near_misses.length) {
      $("near").innerHTML = m.near_misses
        .map((n) => `<li><b>${esc(n.label)}</b> ${fmt(n.score, 3)} of ${fmt(n.threshold)} at ${fmt(n.start_s, 1)}–${fmt(n.end_s, 1)} s</li>`)
        .join("");
    }
    for (const e of m.events) {
      const i = recent.findIndex((r) => r.id === e.id);
      if (i >= 0) recent.splice(i, 1);
      recent.unshift(e);
    }
    if (m.events.length) {
      $("recent").innerHTML = recent
        .slice(0, 8)
        .map((e) => `<li><b>${esc(e.label)}</b> ${fmt(e.score, 3)} · ${fmt(e.start_s, 1)} s · ${e.state}</li>`)
        .join("");
    }
  });
}

// Scrolls the strip left by the new columns and paints them (low mel bins at the bottom).
function drawMel(ctx, canvas, mel) {
  const cols = mel.frames;
  const h = canvas.height;
  const dx = Math.min(cols, canvas.width);
  ctx.drawImage(canvas, dx, 0, canvas.width - dx, h, 0, 0, canvas.width - dx, h);
  const img = ctx.createImageData(dx, h);
  for (let x = 0; x < dx; x++) {
    const f = cols - dx + x;
    for (let y = 0; y < h; y++) {
      const bin = Math.floor(((h - 1 - y) / h) * mel.bins);
      const v = mel.data[f * mel.bins + bin];
      const o = (y * dx + x) * 4;
      img.data[o] = v;
      img.data[o + 1] = Math.floor(v * 0.6);
      img.data[o + 2] = 255 - v;
      img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, canvas.width - dx, 0);
}

// ---------------------------------------------------------------------------- events page
function eventCard(e) {
  const tags = ["audio", "video"]
    .filter((m) => e.modalities[m])
    .map((m) => `<span class="tag${e.fired.includes(m) ? " fired" : ""}">${m}${e.fired.includes(m) ? " fired" : ""}</span>`)
    .join("");
  return (
    `<div class="card" id="ev-${esc(e.id)}" data-label="${esc(e.label)}">` +
    (e.jpeg ? `<img src="${esc(e.jpeg)}" alt="key frame of ${esc(e.label)}">` : `<p class="muted">no key frame</p>`) +
    (e.wav ? `<audio controls preload="none" src="${esc(e.wav)}"></audio>` : `<p class="muted">no audio clip</p>`) +
    `<h3>${esc(e.label)} <small class="muted">${e.state}</small></h3>` +
    `<div>fused <b>${fmt(e.score, 3)}</b> · audio ${fmt(e.score_audio, 3)} · video ${fmt(e.score_video, 3)}</div>` +
    `<div>${time(e.start_ms)}${e.end_ms ? " → " + time(e.end_ms) : ""} <span class="muted">(${fmt(e.start_s, 1)}` +
    `${e.end_s === null ? " s, still open" : "–" + fmt(e.end_s, 1) + " s"})</span></div>` +
    `<div>${tags}</div>` + markBox(e) + `</div>`
  );
}

// Right / wrong / another label: written to labels.csv beside the evidence, which
// `mbt data import` reads to fine-tune the model on this site's own events.
function markBox(e) {
  if (!e.jpeg && !e.wav) return "";
  const others = (status ? status.labels : []).filter((l) => l !== e.label && l !== "none");
  const shown = e.mark === null || e.mark === undefined
    ? `<span class="muted">not marked</span>`
    : e.mark === e.label ? `<b class="ok">marked right</b>` : e.mark === "none" ? `<b class="bad">marked wrong</b>` : `marked <b>${esc(e.mark)}</b>`;
  return (
    `<div class="marks" data-id="${esc(e.id)}">${shown} ` +
    `<button data-v="right">right</button><button data-v="wrong">wrong</button>` +
    `<select data-v="label"><option value="">it was…</option>${others.map((l) => `<option>${esc(l)}</option>`).join("")}` +
    `<option value="?">another label…</option></select>` +
    (e.mark !== null && e.mark !== undefined ? `<button data-v="clear">clear</button>` : "") +
    `<span class="err"></span></div>`
  );
}

function eventsPage() {
  const box = $("events");
  const shown = new Map();
  let older = null;
  const render = () => {
    const list = [...shown.values()].sort((a, b) => b.start_ms - a.start_ms || (a.id < b.id ? 1 : -1));
    box.innerHTML = list.length ? list.map(eventCard).join("") : `<p class="muted">no events yet</p>`;
  };
  const load = async (before) => {
    const page = await getJson("/api/events?limit=50" + (before ? "&before=" + before : ""));
    page.events.forEach((e) => shown.set(e.id, e));
    older = page.older;
    $("older").hidden = !older;
    render();
  };
  $("older").onclick = () => load(older);
  box.addEventListener("click", (ev) => mark(ev, shown, render));
  box.addEventListener("change", (ev) => mark(ev, shown, render));
  load(null);
  live((m) => {
    if (!m.events.length) return;
    m.events.forEach((e) => shown.set(e.id, e));
    render();
  });
}

async function mark(ev, shown, render) {
  const el = ev.target;
  const box = el.closest(".marks");
  const v = el.dataset.v;
  if (!box || !v || (ev.type === "click" && el.tagName === "SELECT")) return;
  const body = { verdict: v };
  if (v === "label") {
    let l = el.value;
    if (!l) return;
    if (l === "?") l = (prompt("Which label? (a-z, 0-9 and _: it becomes an MQTT topic)") || "").trim();
    if (!l) return;
    body.label = l;
  }
  const id = box.dataset.id;
  try {
    const r = await postJson("/api/events/" + encodeURIComponent(id) + "/verdict", body);
    const e = shown.get(id);
    if (e) e.mark = r.label;
    render();
  } catch (err) {
    box.querySelector(".err").textContent = err.message;
  }
}

// -------------------------------------------------------------------------- timeline page
function timelinePage() {
  let data = null;
  const minutes = () => Number($("minutes").value);
  const draw = () => {
    if (!data) return;
    const pts = data.points;
    const box = $("timeline");
    if (!pts.length) {
      box.innerHTML = `<p class="muted">no windows scored yet</p>`;
      return;
    }
    const t1 = pts[pts.length - 1].end_s;
    // The chosen span, or less while the daemon has not run that long.
    const t0 = Math.max(pts[0].start_s, t1 - minutes() * 60);
    const W = 1000, H = 40;
    const x = (t) => (((t - t0) / (t1 - t0 || 1)) * W).toFixed(1);
    const y = (p) => (H - p * H).toFixed(1);
    box.innerHTML = data.labels
      .map((label, k) => {
        if (!data.fires[k]) return "";
        const line = pts.filter((p) => p.end_s >= t0).map((p) => `${x((p.start_s + p.end_s) / 2)},${y(p.fused[k])}`).join(" ");
        const evs = data.events
          .filter((e) => e.label === label)
          .map((e) => {
            const a = Math.max(e.start_s, t0), b = e.end_s === null ? t1 : e.end_s;
            return `<rect class="event" x="${x(a)}" y="0" width="${Math.max(2, x(b) - x(a))}" height="${H}" fill="#ff6b4f" fill-opacity="0.3"><title>${esc(label)} ${fmt(e.score, 3)}</title></rect>`;
          })
          .join("");
        const th = y(data.thresholds[k]);
        return (
          `<div class="lane" data-label="${esc(label)}"><span>${esc(label)}</span>` +
          `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none">${evs}` +
          `<line x1="0" x2="${W}" y1="${th}" y2="${th}" stroke="#ff6b4f" stroke-dasharray="6 4" vector-effect="non-scaling-stroke"/>` +
          `<polyline points="${line}" fill="none" stroke="#4fa3ff" stroke-width="1.5" vector-effect="non-scaling-stroke"/></svg></div>`
        );
      })
      .join("");
  };
  const load = async () => {
    data = await getJson("/api/timeline?minutes=" + minutes());
    draw();
  };
  $("minutes").onchange = load;
  load();
  live((m) => {
    if (!data) return;
    data.points.push(m.window);
    const cut = m.window.end_s - minutes() * 60;
    while (data.points.length && data.points[0].end_s < cut) data.points.shift();
    for (const e of m.events) {
      const i = data.events.findIndex((x) => x.id === e.id);
      if (i >= 0) data.events[i] = e;
      else data.events.push(e);
    }
    draw();
  });
}

(async () => {
  try {
    status = await getJson("/api/status");
  } catch (err) {
    document.querySelector("main").insertAdjacentHTML("afterbegin", `<p class="muted">${esc(err.message)}</p>`);
    return;
  }
  header(status);
  const page = document.body.dataset.page;
  if (page === "live") livePage();
  else if (page === "events") eventsPage();
  else if (page === "timeline") timelinePage();
})();
